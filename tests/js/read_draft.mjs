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
import { Repo, isValidAutomergeUrl } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

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

  const base = new URL(server)
  let response
  try {
    response = await fetch(new URL("/v1/auth/ticket", base), {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      signal: deadline,
    })
  } catch (err) {
    if (deadline.aborted) return finish({ found: false, reason: "timeout" })
    return harnessError(`cannot reach ${base.origin}: ${err.message}`)
  }
  if (response.status === 401 || response.status === 403) {
    return finish({ found: false, reason: "unauthorized", status: response.status })
  }
  if (!response.ok) {
    return harnessError(`POST /v1/auth/ticket answered ${response.status}: ${await response.text()}`)
  }
  const { ticket } = await response.json()
  if (typeof ticket !== "string" || ticket === "") {
    return harnessError("POST /v1/auth/ticket returned no ticket")
  }

  const wsUrl = new URL("/v1/sync", base)
  wsUrl.protocol = base.protocol === "https:" ? "wss:" : "ws:"
  wsUrl.searchParams.set("ticket", ticket)
  const adapter = new WebSocketClientAdapter(wsUrl.toString())
  // Ask only once the server is our peer: with no peer at all, automerge-repo would declare
  // the document unavailable at once.
  const connected = new Promise(resolve => adapter.once("peer-candidate", resolve))
  const repo = new Repo({ network: [adapter] })

  const timedOut = new Promise(resolve =>
    deadline.addEventListener("abort", () => resolve("timeout"), { once: true }),
  )
  if ((await Promise.race([connected, timedOut])) === "timeout") {
    return finish({ found: false, reason: "timeout", detail: "no connection to the sync server" })
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

/** Automerge text reads as a string in automerge 3; older representations stringify. */
function text(value) {
  return value === undefined || value === null ? null : String(value)
}

main().catch(err => harnessError(err?.stack ?? String(err)))
