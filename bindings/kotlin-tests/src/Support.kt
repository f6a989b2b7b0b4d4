// What every test needs: a fresh device database, and the push that the
// server's outbox recorded for a device.
package io.countersign.tests

import io.countersign.Device
import io.countersign.DeviceConfig
import io.countersign.DeviceKeyStore
import io.countersign.Enrolment
import io.countersign.Platform
import java.nio.file.Files
import java.nio.file.Path

fun tempDatabase(): Path = Files.createTempDirectory("countersign-device-").resolve("device.db")

fun openDevice(keys: DeviceKeyStore, database: Path = tempDatabase(), historyLimit: UInt = 500u): Device =
    Device(DeviceConfig(database.toString(), Platform.ANDROID, historyLimit), keys)

fun Device.enrolAt(server: TestServer, card: TestServer.NewCard, pushToken: String? = "fcm-token-1"): Enrolment =
    enrol(server.url, card.code, pushToken, true, "Pixel 9")

/** Polls the outbox (bounded) for the newest push to a device. */
fun TestServer.awaitPush(deviceId: String, count: Int = 1): Map<String, String> {
    repeat(100) {
        val pushes = pushes(deviceId)
        if (pushes.size >= count) return pushes.first()
        Thread.sleep(20)
    }
    error("no push for $deviceId")
}
