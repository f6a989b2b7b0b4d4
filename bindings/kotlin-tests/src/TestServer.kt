// A real `countersign serve` for the tests: its own temporary data
// directory, a free port, an operator key made with the CLI, and the admin
// and requestor APIs spoken over HTTP as an operator and a merchant would.
package io.countersign.tests

import java.net.ServerSocket
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Files
import java.nio.file.Path
import java.time.Duration
import java.time.ZoneOffset
import java.time.ZonedDateTime
import java.time.format.DateTimeFormatter
import java.util.UUID
import java.util.concurrent.TimeUnit
import kotlin.random.Random

class TestServer private constructor(
    val url: String,
    private val process: Process,
    private val adminKey: String,
    val dataDir: Path,
) {
    private val http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build()
    private val requestorId = "shop-1"
    private val requestorKey: String by lazy {
        admin("POST", "/v1/admin/requestors", mapOf("id" to requestorId, "name" to "Nordic Outdoor")).str("apiKey")!!
    }

    /** A new card (a fresh Luhn-valid number) and a code to enrol it. */
    fun newCard(): NewCard {
        val pan = freshPan()
        val card = admin("POST", "/v1/admin/cards", mapOf("acctNumber" to pan, "email" to "taro@example.jp", "language" to "ja"))
        val cardId = card.str("cardId")!!
        val code = admin("POST", "/v1/admin/cards/$cardId/enrolment-codes", null).str("code")!!
        return NewCard(cardId, card.str("maskedPan")!!, code, pan)
    }

    /** Sends an AReq for `pan` (EUR); returns the ARes. */
    fun purchase(pan: String, amountMinor: Long): Any? {
        val areq = mapOf(
            "messageType" to "AReq", "messageVersion" to "2.2.0",
            "threeDSServerTransID" to UUID.randomUUID().toString(),
            "deviceChannel" to "02", "messageCategory" to "01",
            "acctNumber" to pan, "cardExpiryDate" to "3012",
            "purchaseAmount" to amountMinor.toString(), "purchaseCurrency" to "978", "purchaseExponent" to "2",
            "purchaseDate" to ZonedDateTime.now(ZoneOffset.UTC).format(DateTimeFormatter.ofPattern("yyyyMMddHHmmss")),
            "merchantName" to "Nordic Outdoor AB", "mcc" to "5941", "merchantCountryCode" to "752",
            "acquirerMerchantID" to "MID-000451",
            "threeDSRequestorID" to requestorId, "threeDSRequestorName" to "Nordic Outdoor",
            "notificationURL" to "http://127.0.0.1:9/notify",
            "browserAcceptHeader" to "text/html", "browserJavaEnabled" to false, "browserLanguage" to "ja-JP",
            "browserColorDepth" to "24", "browserScreenHeight" to "900", "browserScreenWidth" to "1440",
            "browserTZ" to "-540", "browserUserAgent" to "Mozilla/5.0",
        )
        return call("POST", "/v1/authentications", requestorKey, areq, 200)
    }

    /** A purchase that needs the cardholder; returns its acsTransID. */
    fun challengedPurchase(pan: String, amountMinor: Long = 6_000): String {
        val ares = purchase(pan, amountMinor)
        check(ares.str("transStatus") == "C") { "expected a challenge: ${Json.write(ares)}" }
        return ares.str("acsTransID")!!
    }

    /** The requestor's view of an authentication. */
    fun status(acsTransId: String): Any? = call("GET", "/v1/authentications/$acsTransId", requestorKey, null, 200)

    /** The push data the outbox recorded for a device, newest first. */
    @Suppress("UNCHECKED_CAST")
    fun pushes(deviceId: String): List<Map<String, String>> =
        (call("GET", "/v1/admin/pushes?deviceId=$deviceId", adminKey, null, 200) as List<Any?>)
            .map { it.obj("payload") as Map<String, String> }

    @Suppress("UNCHECKED_CAST")
    fun cardDevices(cardId: String): List<Any?> =
        call("GET", "/v1/admin/cards/$cardId/devices", adminKey, null, 200) as List<Any?>

    private fun admin(method: String, path: String, body: Any?): Any? = call(method, path, adminKey, body, 201)

    private fun call(method: String, path: String, key: String, body: Any?, expect: Int): Any? {
        val request = HttpRequest.newBuilder(URI.create(url + path))
            .header("Authorization", "Bearer $key")
            .header("content-type", "application/json")
            .method(method, if (body == null) HttpRequest.BodyPublishers.noBody() else HttpRequest.BodyPublishers.ofString(Json.write(body)))
            .timeout(Duration.ofSeconds(10))
            .build()
        val response = http.send(request, HttpResponse.BodyHandlers.ofString())
        check(response.statusCode() == expect) { "$method $path: HTTP ${response.statusCode()} ${response.body()}" }
        return Json.parse(response.body())
    }

    private fun freshPan(): String {
        val digits = "37" + (1..12).map { Random.nextInt(10) }.joinToString("")
        return digits + luhnCheckDigit(digits)
    }

    fun stop() {
        process.destroy()
        if (!process.waitFor(10, TimeUnit.SECONDS)) process.destroyForcibly()
    }

    data class NewCard(val cardId: String, val maskedPan: String, val code: String, val pan: String)

    companion object {
        private val binary: String = System.getProperty("countersign.server")
            ?: error("-Dcountersign.server=path/to/countersign is needed")

        /** The server most tests share. */
        val main: TestServer by lazy { start() }

        /** A second server whose challenges expire after a second. */
        val quick: TestServer by lazy { start("COUNTERSIGN_CHALLENGE__EXPIRY_SECS" to "1") }

        private fun start(vararg settings: Pair<String, String>): TestServer {
            val dir = Files.createTempDirectory("countersign-kotlin-")
            val port = ServerSocket(0).use { it.localPort }
            val env = mapOf(
                "COUNTERSIGN_DATABASE__URL" to "sqlite://$dir/countersign.db",
                "COUNTERSIGN_SECRETS__MASTER_KEY_FILE" to "$dir/master.key",
                "COUNTERSIGN_SERVER__LISTEN" to "127.0.0.1:$port",
                "COUNTERSIGN_CHALLENGE__SWEEP_INTERVAL_MS" to "100",
            ) + settings
            val operator = run(env, dir, "operator", "create", "--name", "kotlin-tests")
            val adminKey = operator.lines().first { it.startsWith("api key:") }.substringAfter(":").trim()
            val process = command(env, dir, "serve")
                .redirectOutput(dir.resolve("server.log").toFile())
                .redirectErrorStream(true)
                .start()
            val server = TestServer("http://127.0.0.1:$port", process, adminKey, dir)
            Runtime.getRuntime().addShutdownHook(Thread { server.stop() })
            server.awaitHealthy()
            return server
        }

        private fun command(env: Map<String, String>, dir: Path, vararg args: String): ProcessBuilder =
            ProcessBuilder(listOf(binary) + args).directory(dir.toFile()).also { it.environment().putAll(env) }

        private fun run(env: Map<String, String>, dir: Path, vararg args: String): String {
            val process = command(env, dir, *args).redirectErrorStream(true).start()
            val output = process.inputStream.bufferedReader().readText()
            check(process.waitFor() == 0) { "countersign ${args.joinToString(" ")} failed: $output" }
            return output
        }

        fun luhnCheckDigit(digits: String): Int {
            val sum = digits.reversed().mapIndexed { i, c ->
                val d = c.digitToInt()
                if (i % 2 == 0) (d * 2).let { if (it > 9) it - 9 else it } else d
            }.sum()
            return (10 - sum % 10) % 10
        }
    }

    private fun awaitHealthy() {
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30)
        while (System.nanoTime() < deadline) {
            check(process.isAlive) { "the server exited: ${Files.readString(dataDir.resolve("server.log"))}" }
            val healthy = runCatching {
                http.send(HttpRequest.newBuilder(URI.create("$url/healthz")).build(), HttpResponse.BodyHandlers.discarding()).statusCode() == 200
            }.getOrDefault(false)
            if (healthy) return
            Thread.sleep(50)
        }
        error("the server did not become healthy: ${Files.readString(dataDir.resolve("server.log"))}")
    }
}
