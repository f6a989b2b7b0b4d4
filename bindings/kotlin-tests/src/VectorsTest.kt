// The protocol's shared test vectors (test-vectors/*.json), checked from
// Kotlin: the library rebuilds each message's canonical bytes from the
// case's fields, and the JVM's own ECDSA (java.security) must agree with
// the expected verdict, as must the library's verifier.
package io.countersign.tests

import io.countersign.Decision
import io.countersign.DecisionFields
import io.countersign.DenyReason
import io.countersign.EnrolmentFields
import io.countersign.Platform
import io.countersign.PurchaseTerms
import io.countersign.RequestFields
import io.countersign.SignatureCheck
import io.countersign.decisionSignedBytes
import io.countersign.enrolmentSignedBytes
import io.countersign.requestSignedBytes
import io.countersign.verifySignature
import java.nio.file.Files
import java.nio.file.Path
import org.junit.jupiter.api.Test
import kotlin.math.abs
import kotlin.test.assertEquals
import kotlin.test.assertTrue

class VectorsTest {
    private val dir = Path.of(System.getProperty("countersign.vectors") ?: error("-Dcountersign.vectors=DIR is needed"))

    private fun cases(file: String): List<Any?> = Json.parse(Files.readString(dir.resolve(file))).list("cases")

    /** Checks the bytes, then the signature both ways; `prior` is a verdict reached before the signature. */
    private fun check(case: Any?, bytes: ByteArray, prior: String? = null) {
        val name = case.str("name")!!
        assertEquals(case.str("signedBytes"), bytes.hex(), "$name: canonical bytes")
        val publicKey = case.str("publicKey")!!.unhex()
        val signature = case.str("signature")!!.unhex()
        val library = when (verifySignature(publicKey, bytes, signature)) {
            SignatureCheck.VALID -> "valid"
            SignatureCheck.BAD_SIGNATURE -> "bad_signature"
            SignatureCheck.MALFORMED_SIGNATURE -> "malformed_signature"
            SignatureCheck.MALFORMED_PUBLIC_KEY -> "malformed_public_key"
        }
        val expect = case.str("expect")!!
        assertEquals(expect, prior ?: library, "$name: verdict")
        if (prior == null) {
            assertEquals(expect == "valid", jcaVerifies(publicKey, bytes, signature), "$name: java.security")
        }
    }

    @Test
    fun decisionVectors() {
        val all = cases("decision.json")
        assertTrue(all.size >= 8)
        for (case in all) {
            val input = case.obj("input")
            val decision = when (input.str("decision")) {
                "approve" -> Decision.Approve
                else -> Decision.Deny(if (input.str("denyReason") == "not_me") DenyReason.NOT_ME else DenyReason.CANCELLED)
            }
            val fields = DecisionFields(
                challengeId = input.str("challengeId")!!,
                challengeNonce = input.str("challengeNonce")!!.unhex(),
                decision = decision,
                terms = PurchaseTerms(
                    amountMinor = input.long("amountMinor")!!.toULong(),
                    currency = input.long("currency")!!.toInt().toUShort(),
                    exponent = input.long("exponent")!!.toInt().toUByte(),
                    merchantName = input.str("merchantName")!!,
                    requestorId = input.str("requestorId")!!,
                    merchantId = input.str("merchantId")!!,
                ),
                deviceId = input.str("deviceId")!!,
                signedAt = input.long("signedAt")!!,
                numberMatch = input.long("numberMatch")?.toUInt(),
            )
            check(case, decisionSignedBytes(fields))
        }
    }

    @Test
    fun enrolmentVectors() {
        for (case in cases("enrolment.json")) {
            val input = case.obj("input")
            val fields = EnrolmentFields(
                code = input.str("code")!!,
                publicKey = input.str("publicKey")!!.unhex(),
                platform = if (input.str("platform") == "ios") Platform.IOS else Platform.ANDROID,
                signedAt = input.long("signedAt")!!,
            )
            check(case, enrolmentSignedBytes(fields))
        }
    }

    /** In order, with one nonce log: freshness, then the nonce, then the signature. */
    @Test
    fun requestVectors() {
        val seen = mutableSetOf<Pair<String, String>>()
        for (case in cases("request.json")) {
            val input = case.obj("input")
            val now = case.long("now")!!
            val timestamp = input.long("timestamp")!!
            val nonce = input.str("nonce")!!
            val fields = RequestFields(
                method = input.str("method")!!,
                path = input.str("path")!!,
                deviceId = input.str("deviceId")!!,
                timestamp = timestamp,
                nonce = nonce.unhex(),
                body = input.str("body")!!.toByteArray(),
            )
            val prior = when {
                abs(timestamp - now) > 300_000 -> "stale_timestamp"
                !seen.add(fields.deviceId to nonce) -> "replayed_nonce"
                else -> null
            }
            check(case, requestSignedBytes(fields), prior)
        }
    }
}
