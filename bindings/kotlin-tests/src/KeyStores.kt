// Key stores written in Kotlin, as an app would write one: P-256 keys from
// the JVM's own provider (on Android it would be the Android Keystore).
package io.countersign.tests

import io.countersign.DeviceKeyException
import io.countersign.DeviceKeyStore
import java.math.BigInteger
import java.security.AlgorithmParameters
import java.security.KeyFactory
import java.security.KeyPair
import java.security.KeyPairGenerator
import java.security.PublicKey
import java.security.Signature
import java.security.SignatureException
import java.security.interfaces.ECPublicKey
import java.security.spec.ECGenParameterSpec
import java.security.spec.ECParameterSpec
import java.security.spec.ECPoint
import java.security.spec.ECPublicKeySpec
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.atomic.AtomicInteger

/** P-256 keys held by the JVM's crypto provider. */
class JcaKeyStore : DeviceKeyStore {
    private val keys = ConcurrentHashMap<String, KeyPair>()
    val signatures = AtomicInteger()

    /** A failure to throw from every call instead of answering, when set. */
    @Volatile
    var failure: Throwable? = null

    val aliases: Set<String> get() = keys.keys.toSet()

    override fun createKey(alias: String): ByteArray {
        failure?.let { throw it }
        val generator = KeyPairGenerator.getInstance("EC")
        generator.initialize(ECGenParameterSpec("secp256r1"))
        val pair = generator.generateKeyPair()
        keys[alias] = pair
        return uncompressedPoint(pair.public as ECPublicKey)
    }

    override fun sign(alias: String, message: ByteArray): ByteArray {
        failure?.let { throw it }
        val pair = keys[alias] ?: throw DeviceKeyException.NotFound()
        signatures.incrementAndGet()
        return Signature.getInstance("SHA256withECDSA").run {
            initSign(pair.private)
            update(message)
            sign()
        }
    }

    override fun deleteKey(alias: String) {
        failure?.let { throw it }
        keys.remove(alias)
    }
}

/** `0x04 || X || Y`, each coordinate padded to 32 bytes. */
fun uncompressedPoint(key: ECPublicKey): ByteArray {
    fun coordinate(n: BigInteger): ByteArray {
        val bytes = n.toByteArray().dropWhile { it == 0.toByte() }.toByteArray()
        return ByteArray(32 - bytes.size) + bytes
    }
    return byteArrayOf(4) + coordinate(key.w.affineX) + coordinate(key.w.affineY)
}

/** A P-256 public key from its uncompressed SEC1 point. */
fun jcaPublicKey(sec1: ByteArray): PublicKey {
    require(sec1.size == 65 && sec1[0] == 4.toByte())
    val params = AlgorithmParameters.getInstance("EC")
        .apply { init(ECGenParameterSpec("secp256r1")) }
        .getParameterSpec(ECParameterSpec::class.java)
    val point = ECPoint(BigInteger(1, sec1.copyOfRange(1, 33)), BigInteger(1, sec1.copyOfRange(33, 65)))
    return KeyFactory.getInstance("EC").generatePublic(ECPublicKeySpec(point, params))
}

/** java.security's verdict on a DER signature; a malformed one is false. */
fun jcaVerifies(publicKey: ByteArray, message: ByteArray, signature: ByteArray): Boolean =
    try {
        Signature.getInstance("SHA256withECDSA").run {
            initVerify(jcaPublicKey(publicKey))
            update(message)
            verify(signature)
        }
    } catch (e: SignatureException) {
        false
    }
