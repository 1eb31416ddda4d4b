import java.io.File
import java.nio.file.Files
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.After
import org.junit.Test
import uniffi.sotong_ffi.AccountInfo
import uniffi.sotong_ffi.LiveSyncListener
import uniffi.sotong_ffi.LiveSyncState
import uniffi.sotong_ffi.ProposalEdit
import uniffi.sotong_ffi.RejectedDraft
import uniffi.sotong_ffi.SotongClient
import uniffi.sotong_ffi.SotongException
import uniffi.sotong_ffi.TextField
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNotEquals
import kotlin.test.assertNotNull
import kotlin.test.assertNull
import kotlin.test.assertTrue
import kotlin.test.fail

/**
 * Drives the generated Kotlin API of sotong-ffi against a real sotong-server, started by
 * scripts/kotlin-test.sh, which passes its URL and log file as SOTONG_SERVER_URL and
 * SOTONG_SERVER_LOG. One-time codes are read from the server's development log.
 */
class SotongClientTest {
    private val serverUrl = env("SOTONG_SERVER_URL")
    private val serverLog = File(env("SOTONG_SERVER_LOG"))
    private val dirs = mutableListOf<File>()
    private val clients = mutableListOf<SotongClient>()

    @After
    fun cleanUp() {
        clients.forEach { it.close() }
        dirs.forEach { it.deleteRecursively() }
    }

    @Test
    fun twoDevicesOfOneCitizenMergeConcurrentOfflineEdits() = runBlocking {
        val phone = "+821012345678"
        val a = openDevice()
        val b = openDevice()
        assertNull(a.account())

        val accountA = registerDevice(a, phone, "Phone A")
        val accountB = registerDevice(b, phone, "Tablet B")
        assertEquals(accountA.accountId, accountB.accountId, "one citizen, one account")
        assertNotEquals(accountA.deviceId, accountB.deviceId, "two devices")
        assertEquals(accountA, a.account())
        assertEquals(serverUrl.trimEnd('/'), a.serverUrl().trimEnd('/'))

        val id = a.createProposal("버스 노선", "배차 간격을 줄여 주세요.", "transport")
        val sentA = a.sync()
        assertTrue(sentA.rejected.isEmpty(), "rejected: ${sentA.rejected}")
        assertTrue(sentA.documentsSent >= 1u, "A sent its draft: $sentA")

        val receivedB = b.sync()
        assertTrue(receivedB.rejected.isEmpty(), "rejected: ${receivedB.rejected}")
        assertTrue(receivedB.documentsReceived >= 1u, "B received A's draft: $receivedB")
        val listed = b.listProposals()
        assertEquals(listOf(id), listed.map { it.id })
        assertEquals("버스 노선", listed[0].title)
        assertEquals("transport", listed[0].category)
        assertEquals(a.readProposal(id), b.readProposal(id))

        // Offline, concurrently: A appends to the body; B appends to the title and prepends
        // to the body. Positions count code points.
        val body = "배차 간격을 줄여 주세요."
        val afterA = a.editProposal(
            id,
            ProposalEdit.Splice(TextField.BODY, body.codePoints().count().toUInt(), 0u, " 출퇴근 시간에 특히."),
        )
        assertEquals("배차 간격을 줄여 주세요. 출퇴근 시간에 특히.", afterA.body)
        b.editProposal(id, ProposalEdit.Splice(TextField.TITLE, 5u, 0u, " 개선"))
        val afterB = b.editProposal(id, ProposalEdit.Splice(TextField.BODY, 0u, 0u, "마을버스 "))
        assertEquals("버스 노선 개선", afterB.title)
        assertEquals("마을버스 배차 간격을 줄여 주세요.", afterB.body)

        for (device in listOf(a, b, a)) {
            val report = device.sync()
            assertTrue(report.rejected.isEmpty(), "rejected: ${report.rejected}")
        }

        val merged = a.readProposal(id)
        assertEquals(merged, b.readProposal(id))
        assertEquals("버스 노선 개선", merged.title)
        assertEquals("마을버스 배차 간격을 줄여 주세요. 출퇴근 시간에 특히.", merged.body)
        assertEquals("transport", merged.category)
    }

    @Test
    fun badInputIsATypedInvalidInputError() {
        val client = openDevice()
        val id = client.createProposal("공원 벤치", "벤치를 더 놓아 주세요.", "parks")

        assertFailsWith<SotongException.InvalidInput> { client.readProposal("not a document id") }
        assertFailsWith<SotongException.InvalidInput> { client.readProposal("") }
        assertFailsWith<SotongException.InvalidInput> {
            client.editProposal("automerge:0OIl", ProposalEdit.SetCategory("parks"))
        }
        val tooFar = assertFailsWith<SotongException.InvalidInput> {
            client.editProposal(id, ProposalEdit.Splice(TextField.TITLE, 100u, 0u, "!"))
        }
        assertTrue(tooFar.reason.isNotEmpty())
        assertFailsWith<SotongException.InvalidInput> {
            client.editProposal(id, ProposalEdit.Splice(TextField.BODY, 0u, 1000u, ""))
        }

        // A refused edit changes nothing; an `automerge:` URL names the same draft.
        assertEquals("공원 벤치", client.readProposal("automerge:$id").title)
        val edited = client.editProposal(id, ProposalEdit.Replace(TextField.TITLE, "공원 벤치 추가"))
        assertEquals("공원 벤치 추가", edited.title)
    }

    @Test
    fun syncBeforeRegisteringIsNotRegistered() = runBlocking {
        val client = openDevice()
        assertNull(client.account())
        assertFailsWith<SotongException.NotRegistered> { client.sync() }
        Unit
    }

    @Test
    fun aLiveSessionGoesOnlineReceivesAnotherDevicesEditAndStops() = runBlocking {
        val phone = "+821055500001"
        val a = openDevice()
        val b = openDevice()
        registerDevice(a, phone, "Phone A")
        registerDevice(b, phone, "Tablet B")

        val events = Recorder()
        val handle = b.startLiveSync(events)
        events.await("online") { it == LiveSyncState.Online }
        assertTrue(!handle.isFinished())

        val id = a.createProposal("가로등", "골목길이 어두워요.", "safety")
        a.sync()
        events.await("B is told about A's draft") { it == "changed:$id" }
        assertEquals("가로등", b.readProposal(id).title)

        a.editProposal(id, ProposalEdit.Replace(TextField.TITLE, "가로등 설치"))
        a.sync()
        events.await("B is told about A's edit") { it == "changed:$id" }
        assertEquals("가로등 설치", b.readProposal(id).title)

        handle.stop()
        events.await("stopped") { it == LiveSyncState.Stopped(null) }
        assertTrue(handle.isFinished())
        handle.close()
    }

    @Test
    fun signingOutForgetsTheAccountAndDraftsThenSyncIsNotRegistered() = runBlocking {
        val client = openDevice()
        registerDevice(client, "+821055500002", "Phone")
        client.createProposal("놀이터", "그네가 고장났어요.", "parks")
        client.sync()

        client.signOut()
        assertNull(client.account())
        assertTrue(client.listProposals().isEmpty())
        assertFailsWith<SotongException.NotRegistered> { client.sync() }
        Unit
    }

    @Test
    fun plainHttpToAnotherMachineIsRefused() {
        val dir = Files.createTempDirectory("sotong-kt-").toFile()
        dirs += dir
        assertFailsWith<SotongException.InsecureServer> {
            SotongClient.open(dir.path, "http://sotong.example.kr")
        }
    }

    /** Collects a live session's callbacks (states, and drafts as "changed:ID"/"rejected:ID"). */
    private class Recorder : LiveSyncListener {
        private val events = Channel<Any>(Channel.UNLIMITED)
        private val seen = mutableListOf<Any>()

        override fun onStateChanged(state: LiveSyncState) {
            events.trySend(state)
        }

        override fun onDraftChanged(id: String) {
            events.trySend("changed:$id")
        }

        override fun onDraftRejected(rejected: RejectedDraft) {
            events.trySend("rejected:${rejected.id}:${rejected.code}")
        }

        /** Waits for the next event matching `wanted` (30 s guard against a hang, not a speed check). */
        suspend fun await(what: String, wanted: (Any) -> Boolean) {
            try {
                withTimeout(30_000) {
                    while (true) {
                        val event = events.receive()
                        seen += event
                        if (wanted(event)) return@withTimeout
                    }
                }
            } catch (e: kotlinx.coroutines.TimeoutCancellationException) {
                fail("no $what; saw $seen")
            }
        }
    }

    private fun openDevice(): SotongClient {
        val dir = Files.createTempDirectory("sotong-kt-").toFile()
        dirs += dir
        return SotongClient.open(dir.path, serverUrl).also { clients += it }
    }

    /** Requests a one-time code, reads it from the server log and registers the device. */
    private suspend fun registerDevice(client: SotongClient, phone: String, name: String): AccountInfo {
        val logOffset = serverLog.length()
        client.requestCode(phone)
        val code = awaitCode(phone.takeLast(4), logOffset)
        val info = client.register(phone, code, name)
        assertEquals(info, assertNotNull(client.account()))
        return info
    }

    /** The first one-time code for `***last4` logged after `offset` bytes of the server log. */
    private suspend fun awaitCode(last4: String, offset: Long): String {
        val pattern = Regex("""one-time code for \*\*\*${Regex.escape(last4)}: (\d+)""")
        repeat(200) {
            val text = serverLog.readBytes().let { it.copyOfRange(minOf(offset.toInt(), it.size), it.size) }
                .toString(Charsets.UTF_8)
                .replace(Regex("\u001B\\[[0-9;]*m"), "") // tracing may colour its output
            pattern.find(text)?.let { return it.groupValues[1] }
            delay(50)
        }
        fail("no one-time code for ***$last4 in the server log within 10 s")
    }

    private fun env(name: String): String =
        System.getenv(name) ?: error("$name is not set; run scripts/kotlin-test.sh")
}
