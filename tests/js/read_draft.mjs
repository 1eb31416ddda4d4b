// Reads one Sotong draft from sotong-server as the reference automerge-repo client would:
// gets a WebSocket ticket with the device's bearer token, syncs the document over
// /v1/sync with @automerge/automerge-repo (no storage), and prints ONE JSON line:
//   {"found":true,"title":"...","body":"...","category":"..."}
//   {"found":false,"reason":"unavailable"|"timeout"|"unauthorized"|"connect-refused", ...}
// Exit 0 for both; non-zero (2) only when the harness itself fails (bad arguments, server
// unreachable, unexpected errors).
//
// Usage: node read_draft.mjs --server http://127.0.0.1:PORT --token TOKEN \
//          --doc automerge:ID [--timeout-ms 5000]

import { parseArgs } from "node:util"
import { isValidAutomergeUrl } from "@automerge/automerge-repo"
import { connect, Refused, text } from "./connect.mjs"

let finished = false

/** Prints the result line, then exits once stdout is flushed. */
function finish(result, code = 0) {
  if (finished) return
  finished = true
  process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(code))
}

function harnessError(message) {
  if (finished) return
  finished = true
  process.stderr.write(`read_draft: ${message}\n`, () => process.exit(2))
}

// The WebSocket adapter rethrows connection errors other than ECONNREFUSED from an event
// handler, e.g. when the server refuses the upgrade because the ticket is not valid.
process.on("uncaughtException", err => {
  if (/Unexpected server response: (401|403)/.test(String(err?.message))) {
    finish({ found: false, reason: "connect-refused", detail: err.message })
  } else {
    harnessError(err?.stack ?? String(err))
  }
})

async function main() {
  const { values } = parseArgs({
    options: {
      server: { type: "string" },
      token: { type: "string" },
      doc: { type: "string" },
      "timeout-ms": { type: "string", default: "5000" },
    },
    strict: true,
  })
  const { server, token, doc } = values
  const timeoutMs = Number(values["timeout-ms"])
  if (!server || !token || !doc) {
    return harnessError("usage: --server URL --token TOKEN --doc automerge:ID [--timeout-ms N]")
  }
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    return harnessError("--timeout-ms must be a positive integer")
  }
  const url = doc.startsWith("automerge:") ? doc : `automerge:${doc}`
  if (!isValidAutomergeUrl(url)) {
    return harnessError(`not an automerge document URL: ${doc}`)
  }
  const deadline = AbortSignal.timeout(timeoutMs)

  let repo
  try {
    ;({ repo } = await connect(server, token, deadline))
  } catch (err) {
    if (err instanceof Refused) return finish(err.result)
    return harnessError(err?.stack ?? String(err))
  }

  let handle
  try {
    handle = await repo.find(url, { signal: deadline })
  } catch (err) {
    if (deadline.aborted) return finish({ found: false, reason: "timeout" })
    if (/unavailable/.test(String(err?.message))) {
      return finish({ found: false, reason: "unavailable" })
    }
    return harnessError(err?.stack ?? String(err))
  }
  const content = handle.doc()
  finish({
    found: true,
    title: text(content?.title),
    body: text(content?.body),
    category: text(content?.category),
  })
}

main().catch(err => harnessError(err?.stack ?? String(err)))
