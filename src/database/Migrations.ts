/**
 * The schema, as ordered migrations. Each runs once, in one locked
 * transaction, when the Database layer is built.
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"

const init = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE threads (
      id text PRIMARY KEY,
      title text,
      created_by text NOT NULL,
      created_at timestamptz NOT NULL,
      head_seq integer NOT NULL DEFAULT 0
    )`
  yield* sql`
    CREATE TABLE thread_members (
      thread_id text NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
      user_id text NOT NULL,
      added_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (thread_id, user_id)
    )`
  yield* sql`CREATE INDEX thread_members_by_user ON thread_members (user_id)`
  yield* sql`
    CREATE TABLE messages (
      id text PRIMARY KEY,
      position bigint GENERATED ALWAYS AS IDENTITY,
      thread_id text NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
      user_id text NOT NULL,
      content text NOT NULL,
      created_at timestamptz NOT NULL
    )`
  yield* sql`CREATE INDEX messages_by_thread ON messages (thread_id, position)`
  yield* sql`
    CREATE TABLE runs (
      id text PRIMARY KEY,
      thread_id text NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
      message_id text NOT NULL REFERENCES messages (id),
      agent text NOT NULL,
      status text NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
      error_code text,
      started_at timestamptz NOT NULL,
      ended_at timestamptz
    )`
  // At most one active run per thread, whichever node started it: the
  // database, not a process-local map, is what answers "busy".
  yield* sql`CREATE UNIQUE INDEX runs_one_active_per_thread ON runs (thread_id) WHERE status = 'running'`
  yield* sql`
    CREATE TABLE events (
      thread_id text NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
      seq integer NOT NULL,
      id uuid NOT NULL UNIQUE,
      event_type text NOT NULL,
      run_id text,
      created_at timestamptz NOT NULL,
      -- json, not jsonb: keeps the text as written, so a replayed envelope is byte-identical to the live one
      data json NOT NULL,
      PRIMARY KEY (thread_id, seq)
    )`
})

// Each run has an owner process and a lease it renews; a run whose lease has expired may be ended by
// any process. A run of an earlier version has neither, and counts as expired.
const runLeases = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE runs ADD COLUMN owner text, ADD COLUMN lease_expires_at timestamptz`
  yield* sql`CREATE INDEX runs_running_by_lease ON runs (lease_expires_at) WHERE status = 'running'`
  // Every tool call of a run, so the event log can refuse an unpaired tool_completed or a reused id,
  // and close the open ones when the run ends.
  yield* sql`
    CREATE TABLE run_tool_calls (
      run_id text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
      tool_call_id text NOT NULL,
      tool text NOT NULL,
      started_at timestamptz NOT NULL,
      completed boolean NOT NULL DEFAULT false,
      PRIMARY KEY (run_id, tool_call_id)
    )`
})

// Messages sent with `on_busy: "enqueue"` wait here, in the order they were sent, until their run
// starts: in the database, so a queued message outlives the process that took it. A run takes the
// first queued message of its thread in the transaction that starts it, under the thread's lock, and
// the one-active-run index still decides; a message is started by at most one run, ever.
const messageQueue = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE message_queue (
      message_id text PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
      thread_id text NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
      position bigint GENERATED ALWAYS AS IDENTITY,
      queued_at timestamptz NOT NULL
    )`
  yield* sql`CREATE INDEX message_queue_by_thread ON message_queue (thread_id, position)`
  yield* sql`CREATE UNIQUE INDEX runs_one_per_message ON runs (message_id)`
})

// The tokens of a completed run's model requests, as the provider reported them (agent_completed's usage).
const runUsage = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE runs ADD COLUMN input_tokens bigint, ADD COLUMN output_tokens bigint`
})

// Who is online, for BROKER=postgres: a row per user and node holding him, renewed by that node; a row
// older than PRESENCE_TTL_MS is a crashed node's and does not count.
const presence = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE presence (
      user_id text NOT NULL,
      node text NOT NULL,
      renewed_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (user_id, node)
    )`
})

export const loader = Migrator.fromRecord({
  "0001_init": init,
  "0002_run_leases": runLeases,
  "0003_message_queue": messageQueue,
  "0004_run_usage": runUsage,
  "0005_presence": presence
})
