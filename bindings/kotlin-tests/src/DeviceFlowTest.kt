// The bindings end to end: the real library, through the generated Kotlin,
// against a running server, with keys held by a Kotlin key store.
package io.countersign.tests

import io.countersign.ChallengeOutcome
import io.countersign.Decision
import io.countersign.DenyReason
import io.countersign.Device
import io.countersign.DeviceConfig
import io.countersign.Platform
import io.countersign.PushSettings
import org.junit.jupiter.api.Test
import kotlin.test.assertEquals
import kotlin.test.assertNotNull
import kotlin.test.assertNull
import kotlin.test.assertTrue

class DeviceFlowTest {
    private val server = TestServer.main

    @Test
    fun enrolmentReturnsTheMaskedCardAndTheKeyStoreSigns() {
        val keys = JcaKeyStore()
        val card = server.newCard()
        openDevice(keys).use { device ->
            val enrolment = device.enrolAt(server, card)
            assertEquals(card.cardId, enrolment.card.cardId)
            assertEquals(card.maskedPan, enrolment.card.maskedPan)
            assertTrue(enrolment.card.maskedPan.endsWith(card.pan.takeLast(4)))
            assertTrue(enrolment.card.issuerName.isNotBlank())
            assertEquals(server.url, enrolment.serverUrl)
            assertEquals(1, keys.aliases.size, "one key for the server")
            assertEquals(1, keys.signatures.get(), "the proof of possession was signed in Kotlin")
            assertEquals(listOf(enrolment), device.enrolments())
            val devices = server.cardDevices(card.cardId)
            assertEquals(enrolment.deviceId, devices.single().str("deviceId"))
        }
    }

    @Test
    fun aPushLeadsToTheDetailsAndAnApprovalMakesTheAuthenticationY() {
        val card = server.newCard()
        openDevice(JcaKeyStore()).use { device ->
            val enrolment = device.enrolAt(server, card)
            val acs = server.challengedPurchase(card.pan, 6_000)
            val push = server.awaitPush(enrolment.deviceId)
            assertEquals("challenge", push["cs_type"])
            assertEquals(setOf("cs_type", "cs_challenge", "cs_expires"), push.keys, "no purchase details in a push")

            val challenge = assertNotNull(device.handlePush(push))
            assertEquals(push["cs_challenge"], challenge.challengeId)
            assertEquals(6_000uL, challenge.terms.amountMinor)
            assertEquals(978.toUShort(), challenge.terms.currency)
            assertEquals(2.toUByte(), challenge.terms.exponent)
            assertEquals("Nordic Outdoor AB", challenge.terms.merchantName)
            assertEquals(card.cardId, challenge.card.cardId)
            assertNull(challenge.numberChoices, "60.00 EUR is below number matching")
            assertTrue(challenge.expiresAt > System.currentTimeMillis())

            val receipt = device.approve(challenge, null)
            assertEquals(ChallengeOutcome.APPROVED, receipt.outcome)
            val status = server.status(acs)
            assertEquals("Y", status.str("transStatus"))
            assertNotNull(status.str("authenticationValue"))
        }
    }

    @Test
    fun aNumberMatchedApprovalUsesTheNumberTheCheckoutShows() {
        val card = server.newCard()
        openDevice(JcaKeyStore()).use { device ->
            val enrolment = device.enrolAt(server, card)
            val acs = server.challengedPurchase(card.pan, 12_800)
            val shown = server.status(acs).obj("challenge").long("numberMatch")!!.toUInt()
            val challenge = assertNotNull(device.handlePush(server.awaitPush(enrolment.deviceId)))
            val choices = assertNotNull(challenge.numberChoices)
            assertEquals(3, choices.size)
            assertTrue(shown in choices)
            assertEquals(ChallengeOutcome.APPROVED, device.approve(challenge, shown).outcome)
            assertEquals("Y", server.status(acs).str("transStatus"))
        }
    }

    @Test
    fun aDenialMakesTheAuthenticationN() {
        val card = server.newCard()
        openDevice(JcaKeyStore()).use { device ->
            val enrolment = device.enrolAt(server, card)
            val acs = server.challengedPurchase(card.pan)
            val challenge = assertNotNull(device.handlePush(server.awaitPush(enrolment.deviceId)))
            assertEquals(ChallengeOutcome.DENIED, device.deny(challenge, DenyReason.NOT_ME).outcome)
            val status = server.status(acs)
            assertEquals("N", status.str("transStatus"))
            assertEquals("11", status.str("transStatusReason"), "11: suspected fraud")
        }
    }

    @Test
    fun aLostPushIsRecoveredByThePendingPull() {
        val card = server.newCard()
        openDevice(JcaKeyStore()).use { device ->
            device.enrolAt(server, card, pushToken = null)
            assertEquals(emptyList(), device.pendingChallenges())
            val acs = server.challengedPurchase(card.pan, 7_777)
            val pending = device.pendingChallenges()
            val challenge = pending.single()
            assertEquals(7_777uL, challenge.terms.amountMinor)
            device.approve(challenge, null)
            assertEquals("Y", server.status(acs).str("transStatus"))
            assertEquals(emptyList(), device.pendingChallenges())
        }
    }

    @Test
    fun oneDeviceHoldsSeveralCardsAtSeveralServers() {
        val keys = JcaKeyStore()
        val (a, b, c) = listOf(server.newCard(), server.newCard(), TestServer.quick.newCard())
        openDevice(keys).use { device ->
            val first = device.enrolAt(server, a)
            val second = device.enrolAt(server, b)
            val elsewhere = device.enrolAt(TestServer.quick, c)
            assertEquals(first.deviceId, second.deviceId, "one device per server")
            assertTrue(first.deviceId != elsewhere.deviceId)
            assertEquals(2, keys.aliases.size, "one key per server")
            assertEquals(setOf(a.cardId, b.cardId, c.cardId), device.enrolments().map { it.card.cardId }.toSet())

            // A purchase on the second card is found by the pull as well.
            server.challengedPurchase(b.pan)
            assertEquals(b.cardId, device.pendingChallenges().single().card.cardId)

            device.unenrol(server.url, b.cardId)
            assertEquals(emptyList(), server.cardDevices(b.cardId))
            assertEquals(1, server.cardDevices(a.cardId).size)
            device.unenrol(server.url, a.cardId)
            assertEquals(emptyList(), server.cardDevices(a.cardId))
            assertEquals(1, keys.aliases.size, "the key for the first server is deleted with its last card")
            assertEquals(listOf(c.cardId), device.enrolments().map { it.card.cardId })
        }
    }

    @Test
    fun enrolmentsAndABoundedHistorySurviveARestart() {
        val keys = JcaKeyStore()
        val database = tempDatabase()
        val card = server.newCard()
        openDevice(keys, database, historyLimit = 2u).use { device ->
            device.enrolAt(server, card)
            for (answer in listOf<Decision>(Decision.Approve, Decision.Deny(DenyReason.NOT_ME), Decision.Deny(DenyReason.CANCELLED))) {
                server.challengedPurchase(card.pan)
                val challenge = device.pendingChallenges().single()
                when (answer) {
                    is Decision.Approve -> device.approve(challenge, null)
                    is Decision.Deny -> device.deny(challenge, answer.reason)
                }
            }
        }
        openDevice(keys, database, historyLimit = 2u).use { device ->
            assertEquals(listOf(card.cardId), device.enrolments().map { it.card.cardId })
            val history = device.history(10u)
            assertEquals(
                listOf<Decision>(Decision.Deny(DenyReason.CANCELLED), Decision.Deny(DenyReason.NOT_ME)),
                history.map { it.decision },
                "newest first, the oldest dropped",
            )
            assertEquals(ChallengeOutcome.CANCELLED, history.first().outcome)
            assertEquals(ChallengeOutcome.DENIED, history.last().outcome)
            assertEquals("Nordic Outdoor AB", history.first().terms.merchantName)
            assertEquals(card.maskedPan, history.first().card.maskedPan)

            val acs = server.challengedPurchase(card.pan)
            device.approve(device.pendingChallenges().single(), null)
            assertEquals("Y", server.status(acs).str("transStatus"))
            assertEquals(Decision.Approve, device.history(1u).single().decision)
        }
    }

    @Test
    fun pushSettingsReachTheServer() {
        val card = server.newCard()
        openDevice(JcaKeyStore()).use { device ->
            device.enrolAt(server, card)
            assertEquals(PushSettings("fcm-token-1", true), device.pushSettings())
            device.updatePushSettings(null, false)
            assertEquals(PushSettings(null, false), device.pushSettings())
            val summary = server.cardDevices(card.cardId).single()
            assertEquals(false, (summary as Map<*, *>)["notificationsEnabled"])
            assertEquals(false, summary["hasPushToken"])
        }
    }

    @Test
    fun softwareKeysInAFileWorkAcrossRestarts() {
        val database = tempDatabase()
        val keyFile = database.resolveSibling("keys.db").toString()
        val config = DeviceConfig(database.toString(), Platform.IOS)
        val card = server.newCard()
        Device.withSoftwareKeys(config, keyFile).use { it.enrolAt(server, card) }
        Device.withSoftwareKeys(config, keyFile).use { device ->
            val acs = server.challengedPurchase(card.pan)
            device.approve(device.pendingChallenges().single(), null)
            assertEquals("Y", server.status(acs).str("transStatus"))
        }
    }
}
