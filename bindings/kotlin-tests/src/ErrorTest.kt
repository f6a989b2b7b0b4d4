// Each error the library can raise, as the exception a Kotlin app catches,
// and bad input of every kind: typed errors, never a crash across the FFI.
package io.countersign.tests

import com.sun.net.httpserver.HttpServer
import io.countersign.ChallengeOutcome
import io.countersign.CountersignException
import io.countersign.DenyReason
import io.countersign.DeviceKeyException
import io.countersign.DeviceKeyStore
import java.net.InetSocketAddress
import java.net.ServerSocket
import java.nio.file.Files
import org.junit.jupiter.api.Test
import kotlin.random.Random
import kotlin.test.assertContains
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNotNull
import kotlin.test.assertNull

class ErrorTest {
    private val server = TestServer.main

    @Test
    fun anUnreachableServerIsNetwork() {
        val closedPort = ServerSocket(0).use { it.localPort }
        openDevice(JcaKeyStore()).use { device ->
            assertFailsWith<CountersignException.Network> {
                device.enrol("http://127.0.0.1:$closedPort", "ABCD-EFGH-JKMN", null, true, "Pixel")
            }
        }
    }

    @Test
    fun aWrongEnrolmentCodeIsServerRefusedWithItsCode() {
        // A real card's code with its last (secret) character changed: a
        // made-up code could share its lookup part with one issued earlier.
        val code = server.newCard().code
        val wrong = code.dropLast(1) + if (code.endsWith("0")) "1" else "0"
        openDevice(JcaKeyStore()).use { device ->
            val refused = assertFailsWith<CountersignException.ServerRefused> {
                device.enrol(server.url, wrong, null, true, "Pixel")
            }
            assertEquals("enrolment_code_invalid", refused.code)
            assertEquals(400.toUShort(), refused.status)
            assertEquals(emptyList(), device.enrolments())
        }
    }

    @Test
    fun aChallengeAnsweredTooLateIsExpired() {
        val quick = TestServer.quick
        val card = quick.newCard()
        openDevice(JcaKeyStore()).use { device ->
            device.enrolAt(quick, card)
            quick.challengedPurchase(card.pan)
            val challenge = device.pendingChallenges().single()
            Thread.sleep(1_500)
            assertFailsWith<CountersignException.Expired> { device.approve(challenge, null) }
        }
    }

    @Test
    fun aSecondAnswerIsAlreadyDecided() {
        val card = server.newCard()
        openDevice(JcaKeyStore()).use { device ->
            device.enrolAt(server, card)
            server.challengedPurchase(card.pan)
            val challenge = device.pendingChallenges().single()
            assertEquals(ChallengeOutcome.CANCELLED, device.deny(challenge, DenyReason.CANCELLED).outcome)
            assertFailsWith<CountersignException.AlreadyDecided> { device.approve(challenge, null) }
        }
    }

    @Test
    fun answeringForACardNoLongerEnrolledIsNotEnrolled() {
        val card = server.newCard()
        openDevice(JcaKeyStore()).use { device ->
            device.enrolAt(server, card)
            server.challengedPurchase(card.pan)
            val challenge = device.pendingChallenges().single()
            device.unenrol(server.url, card.cardId)
            assertFailsWith<CountersignException.NotEnrolled> { device.approve(challenge, null) }
            assertFailsWith<CountersignException.NotEnrolled> { device.unenrol(server.url, card.cardId) }
        }
    }

    @Test
    fun aKotlinKeyStoreThatThrowsIsKeyUnavailableAndNothingIsSent() {
        val keys = JcaKeyStore()
        val card = server.newCard()
        openDevice(keys).use { device ->
            device.enrolAt(server, card)
            val acs = server.challengedPurchase(card.pan)
            val challenge = device.pendingChallenges().single()

            keys.failure = DeviceKeyException.Cancelled()
            assertFailsWith<CountersignException.KeyUnavailable> { device.approve(challenge, null) }
            keys.failure = IllegalStateException("secure hardware gone")
            val unexpected = assertFailsWith<CountersignException.KeyUnavailable> { device.approve(challenge, null) }
            assertContains(unexpected.reason, "secure hardware gone")
            assertEquals("pending", server.status(acs).obj("challenge").str("state"))

            keys.failure = null
            device.approve(challenge, null)
            assertEquals("Y", server.status(acs).str("transStatus"))
        }
    }

    @Test
    fun aKeyStoreReturningAnUnusableKeyIsKeyUnavailable() {
        val compressed = object : DeviceKeyStore {
            override fun createKey(alias: String) = byteArrayOf(2) + ByteArray(32) { 9 }
            override fun sign(alias: String, message: ByteArray): ByteArray = throw DeviceKeyException.NotFound()
            override fun deleteKey(alias: String) {}
        }
        openDevice(compressed).use { device ->
            assertFailsWith<CountersignException.KeyUnavailable> {
                device.enrol(server.url, server.newCard().code, null, true, "Pixel")
            }
        }
    }

    @Test
    fun unusableInputIsBadPayload() {
        val card = server.newCard()
        openDevice(JcaKeyStore()).use { device ->
            for (url in listOf("http://issuer.example", "ftp://127.0.0.1", "not a url", "")) {
                assertFailsWith<CountersignException.BadPayload>(url) { device.enrol(url, card.code, null, true, "Pixel") }
            }
            val enrolment = device.enrolAt(server, card)
            val garbage = listOf(
                mapOf("cs_type" to "challenge"),
                mapOf("cs_type" to "challenge", "cs_challenge" to "c", "cs_expires" to "tomorrow"),
                mapOf("cs_type" to "challenge", "cs_challenge" to "", "cs_expires" to "1"),
                mapOf("cs_type" to "challenge", "cs_challenge" to "x".repeat(65), "cs_expires" to "1"),
            )
            for (push in garbage) {
                assertFailsWith<CountersignException.BadPayload>(push.toString()) { device.handlePush(push) }
            }
            assertNull(device.handlePush(mapOf("aps" to "{}", "campaign" to "spring-sale")))
            assertNull(device.handlePush(emptyMap()))

            server.challengedPurchase(card.pan, 12_800)
            val challenge = assertNotNull(device.handlePush(server.awaitPush(enrolment.deviceId)))
            val offered = assertNotNull(challenge.numberChoices)
            val notOffered = (0u..99u).first { it !in offered }
            assertFailsWith<CountersignException.BadPayload> { device.approve(challenge, null) }
            assertFailsWith<CountersignException.BadPayload> { device.approve(challenge, notOffered) }
            assertFailsWith<CountersignException.BadPayload> { device.approve(challenge, 1000u) }
        }
    }

    @Test
    fun junkFromTheServerIsBadResponse() {
        val replies = ArrayDeque(
            listOf(
                200 to "<html>captive portal</html>",
                201 to """{"deviceId": 7}""",
                500 to "Internal Server Error",
                404 to """{"error": "not a countersign error body"}""",
            ),
        )
        val junk = HttpServer.create(InetSocketAddress("127.0.0.1", 0), 0)
        junk.createContext("/") { exchange ->
            val (status, body) = replies.removeFirst()
            val bytes = body.toByteArray()
            exchange.sendResponseHeaders(status, bytes.size.toLong())
            exchange.responseBody.use { it.write(bytes) }
        }
        junk.start()
        try {
            openDevice(JcaKeyStore()).use { device ->
                repeat(4) {
                    assertFailsWith<CountersignException.BadResponse> {
                        device.enrol("http://127.0.0.1:${junk.address.port}", "ABCD-EFGH-JKMN", null, true, "Pixel")
                    }
                }
                assertEquals(emptyList(), device.enrolments())
            }
        } finally {
            junk.stop(0)
        }
    }

    @Test
    fun aCorruptedLocalDatabaseIsLocalStorage() {
        val garbage = tempDatabase()
        Files.write(garbage, Random.nextBytes(16_384))
        assertFailsWith<CountersignException.LocalStorage> { openDevice(JcaKeyStore(), garbage) }

        // A real database, enrolled, whose pages after the header are overwritten.
        val damaged = tempDatabase()
        val keys = JcaKeyStore()
        openDevice(keys, damaged).use { it.enrolAt(server, server.newCard()) }
        val bytes = Files.readAllBytes(damaged)
        for (i in 100 until bytes.size) bytes[i] = 0xa5.toByte()
        Files.write(damaged, bytes)
        assertFailsWith<CountersignException.LocalStorage> { openDevice(keys, damaged) }
    }
}
