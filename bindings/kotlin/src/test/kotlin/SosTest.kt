import java.io.File
import java.nio.file.Files
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.After
import org.junit.Test
import uniffi.sotong_ffi.SmsSender
import uniffi.sotong_ffi.SosEvent
import uniffi.sotong_ffi.SosFeedback
import uniffi.sotong_ffi.SosFix
import uniffi.sotong_ffi.SosFixMethod
import uniffi.sotong_ffi.SosLinkState
import uniffi.sotong_ffi.SosListener
import uniffi.sotong_ffi.SosPhase
import uniffi.sotong_ffi.SosReply
import uniffi.sotong_ffi.SosSendFailure
import uniffi.sotong_ffi.SosTrigger
import uniffi.sotong_ffi.SotongClient
import uniffi.sotong_ffi.SotongException
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNotNull
import kotlin.test.assertNull
import kotlin.test.assertTrue
import kotlin.test.fail

/**
 * The SOS silent call through the generated Kotlin API: trigger, fixes, status, cancel with
 * the PIN, and the duress PIN that only looks like a cancel. Run by scripts/kotlin-test.sh.
 */
class SosTest {
    private val serverUrl = System.getenv("SOTONG_SERVER_URL")
        ?: error("SOTONG_SERVER_URL is not set; run scripts/kotlin-test.sh")
    private val serverLog = File(
        System.getenv("SOTONG_SERVER_LOG") ?: error("SOTONG_SERVER_LOG is not set; run scripts/kotlin-test.sh"),
    )
    private val dirs = mutableListOf<File>()
    private val clients = mutableListOf<SotongClient>()

    @After
    fun cleanUp() {
        clients.forEach { it.close() }
        dirs.forEach { it.deleteRecursively() }
    }

    private fun openDevice(): SotongClient {
        val dir = Files.createTempDirectory("sotong-sos-kt-").toFile()
        dirs += dir
        return SotongClient.open(dir.path, serverUrl).also { clients += it }
    }

    private fun fix(n: Int) = SosFix(
        lat = 37.5665 + n * 0.0005,
        lon = 126.978,
        accuracyM = 10.0 + n,
        altitudeM = null,
        speedMps = null,
        headingDeg = null,
        timeMs = System.currentTimeMillis() - 300,
        method = SosFixMethod.GPS,
        batteryPct = 55u,
    )

    @Test
    fun triggerFixesStatusAndCancelWithThePin() {
        val phone = openDevice()
        assertNull(phone.sosStatus())
        assertNull(phone.sosNextFixDue())
        phone.sosSetPins(null, "2468", "1357")

        val id = phone.sosTrigger(SosTrigger.POWER_KEY)
        assertNotNull(phone.sosNextFixDue(), "a fix is due while live")
        assertEquals(2u, phone.sosPushFix(fix(0)))
        assertEquals(3u, phone.sosPushFix(fix(1)))
        assertEquals(4u, phone.sosReply(SosReply.CantTalk))
        val status = assertNotNull(phone.sosStatus())
        assertEquals(id, status.incident)
        assertEquals(SosPhase.ACTIVE, status.phase)
        assertEquals(SosTrigger.POWER_KEY, status.trigger)
        assertEquals(listOf<SosReply>(SosReply.CantTalk), status.messages.map { it.content })

        // Bad input is a typed error and loses nothing.
        assertFailsWith<SotongException.InvalidInput> { phone.sosPushFix(fix(2).copy(lat = 95.0)) }
        assertFailsWith<SotongException.WrongPin> { phone.sosCancel("0000") }
        assertEquals(SosPhase.ACTIVE, phone.sosStatus()?.phase)

        val cancelled = phone.sosCancel("2468")
        assertEquals(SosPhase.CANCELLED, cancelled.phase)
        assertNull(phone.sosNextFixDue(), "no fix is due once cancelled")
        assertFailsWith<SotongException.NoIncident> { phone.sosPushFix(fix(3)) }
    }

    @Test
    fun theDuressPinLooksCancelledWhileFixesContinue() {
        val phone = openDevice()
        phone.sosSetPins(null, "2468", "1357")
        phone.sosTrigger(SosTrigger.BUTTON_HOLD)
        phone.sosPushFix(fix(0))
        val shown = phone.sosCancel("1357")
        assertEquals(SosPhase.CANCELLED, shown.phase)
        assertEquals(SosPhase.CANCELLED, phone.sosStatus()?.phase)
        // Underneath it is live: the platform keeps taking fixes, and they are kept.
        assertNotNull(phone.sosNextFixDue())
        assertEquals(4u, phone.sosPushFix(fix(1)))
        // Whoever forced the duress PIN out cannot change the PINs with it.
        phone.sosSetPins("1357", "0000", null)
        assertFailsWith<SotongException.WrongPin> { phone.sosSetPins("0000", "1111", null) }
        assertNotNull(phone.sosNextFixDue(), "still live")
    }

    @Test
    fun feedbackIsCheckedStoredAndReplacedOnceTheIncidentEnded() {
        val phone = openDevice()
        phone.sosSetPins(null, "2468", "1357")
        val id = phone.sosTrigger(SosTrigger.WIDGET)
        val good = SosFeedback(rating = 4u, feltSafe = true, comment = "빨리 와 주셔서 감사합니다")
        // Not while it is shown as live.
        assertFailsWith<SotongException.NoIncident> { phone.sosFeedback(id, good) }
        phone.sosCancel("2468")
        // Bad input is a typed error and stores nothing.
        assertFailsWith<SotongException.InvalidInput> { phone.sosFeedback(id, good.copy(rating = 6u)) }
        assertFailsWith<SotongException.InvalidInput> { phone.sosFeedback(id, good.copy(comment = "x".repeat(1001))) }
        assertFailsWith<SotongException.InvalidInput> { phone.sosFeedback("not-an-id", good) }
        assertNull(phone.sosStatus()?.feedback)
        phone.sosFeedback(id, good)
        // A second replaces the first; it waits for the sender (and for dispatch to close).
        phone.sosFeedback(id, good.copy(rating = 5u, feltSafe = null, comment = null))
        val shown = assertNotNull(phone.sosStatus()?.feedback)
        assertEquals(SosFeedback(rating = 5u, feltSafe = null, comment = null), shown.feedback)
        assertEquals(false, shown.sent)
        assertNull(shown.sendError)
        assertNull(phone.sosStatus()?.sendError)
    }

    @Test
    fun theSenderOfAnUnregisteredPhoneStopsAndSaysWhy() = runBlocking {
        val phone = openDevice()
        phone.sosTrigger(SosTrigger.WIDGET)
        val states = Channel<SosLinkState>(Channel.UNLIMITED)
        val listener = object : SosListener {
            override fun onStateChanged(state: SosLinkState) {
                states.trySend(state)
            }
            override fun onEvent(incident: String, event: SosEvent) {}
            override fun onSendFailed(incident: String, what: SosSendFailure, reason: String) {}
        }
        val sms = object : SmsSender {
            override fun sendSms(number: String, text: String) {}
        }
        val handle = phone.sosStartTransport(listener, sms)
        val stopped = withTimeout(30_000) {
            var s = states.receive()
            while (s !is SosLinkState.Stopped) s = states.receive()
            s
        }
        assertTrue(stopped.error?.contains("not registered") == true, "$stopped")
        assertTrue(handle.isFinished())
        handle.close()
    }

    @Test
    fun theSenderDeliversEveryFixAndStopsOnceCancelled() = runBlocking {
        val phone = openDevice()
        val number = "+821055509999"
        val offset = serverLog.length()
        phone.requestCode(number)
        phone.register(number, awaitCode(number.takeLast(4), offset), "SOS phone")
        phone.sosSetPins(null, "2468", "1357")
        phone.sosTrigger(SosTrigger.BUTTON_HOLD)
        phone.sosPushFix(fix(0))
        val states = Channel<SosLinkState>(Channel.UNLIMITED)
        val listener = object : SosListener {
            override fun onStateChanged(state: SosLinkState) {
                states.trySend(state)
            }
            override fun onEvent(incident: String, event: SosEvent) {}
            override fun onSendFailed(incident: String, what: SosSendFailure, reason: String) {}
        }
        val handle = phone.sosStartTransport(listener, null)
        withTimeout(30_000) {
            while (states.receive() != SosLinkState.Waiting) {}
        }
        // Delivered; the real PIN ends it and the sender stops by itself.
        phone.sosCancel("2468")
        val stopped = withTimeout(30_000) {
            var s = states.receive()
            while (s !is SosLinkState.Stopped) s = states.receive()
            s
        }
        assertNull(stopped.error, "$stopped")
        assertTrue(handle.isFinished())
        handle.close()
    }

    /** The first one-time code for `***last4` logged after `offset` bytes of the server log. */
    private suspend fun awaitCode(last4: String, offset: Long): String {
        val pattern = Regex("""one-time code for \*\*\*${Regex.escape(last4)}: (\d+)""")
        repeat(200) {
            val text = serverLog.readBytes().let { it.copyOfRange(minOf(offset.toInt(), it.size), it.size) }
                .toString(Charsets.UTF_8)
                .replace(Regex("\u001B\\[[0-9;]*m"), "")
            pattern.find(text)?.let { return it.groupValues[1] }
            delay(50)
        }
        fail("no one-time code for ***$last4 in the server log within 10 s")
    }
}
