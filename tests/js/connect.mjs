// How the reference automerge-repo client reaches sotong-server: a single-use WebSocket ticket
// bought with the device's bearer token, then /v1/sync with the WebSocket adapter (no storage).
// Shared by read_draft.mjs and edit_draft.mjs.

import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

/** A failure the test expects and reads (printed as a result line, exit 0). */
export class Refused extends Error {
  constructor(result) {
    super(result.reason)
    this.result = result
  }
}

/**
 * Gets a ticket, connects, and waits until the server is our peer: with no peer at all,
 * automerge-repo would declare any document unavailable at once.
 * Throws `Refused` for unauthorized / timeout; other errors are the harness's.
 */
export async function connect(server, token, deadline) {
  const base = new URL(server)
  let response
  try {
    response = await fetch(new URL("/v1/auth/ticket", base), {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      signal: deadline,
    })
  } catch (err) {
    if (deadline.aborted) throw new Refused({ found: false, reason: "timeout" })
    throw new Error(`cannot reach ${base.origin}: ${err.message}`)
  }
  if (response.status === 401 || response.status === 403) {
    throw new Refused({ found: false, reason: "unauthorized", status: response.status })
  }
  if (!response.ok) {
    throw new Error(`POST /v1/auth/ticket answered ${response.status}: ${await response.text()}`)
  }
  const { ticket } = await response.json()
  if (typeof ticket !== "string" || ticket === "") {
    throw new Error("POST /v1/auth/ticket returned no ticket")
  }

  const wsUrl = new URL("/v1/sync", base)
  wsUrl.protocol = base.protocol === "https:" ? "wss:" : "ws:"
  wsUrl.searchParams.set("ticket", ticket)
  const adapter = new WebSocketClientAdapter(wsUrl.toString())
  const connected = new Promise(resolve => adapter.once("peer-candidate", resolve))
  const repo = new Repo({ network: [adapter] })
  if ((await Promise.race([connected, aborted(deadline)])) === "timeout") {
    throw new Refused({
      found: false,
      reason: "timeout",
      detail: "no connection to the sync server",
    })
  }
  return { repo, adapter }
}

/** Resolves "timeout" when `signal` aborts. */
export function aborted(signal) {
  return new Promise(resolve => {
    if (signal.aborted) return resolve("timeout")
    signal.addEventListener("abort", () => resolve("timeout"), { once: true })
  })
}

/** Automerge text reads as a string in automerge 3; older representations stringify. */
export function text(value) {
  return value === undefined || value === null ? null : String(value)
}
