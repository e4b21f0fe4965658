// Adapts the location service's bindings to the store's rows (and back) for write-behind
// persistence, so registered phones are reachable again at once after a restart.
import type { BindingRow, Store } from '../store/types.ts';
import type { Binding, FlowTransport } from './location.ts';
import type { BindingPersistence } from './write-behind.ts';

const TRANSPORTS = new Set(['udp', 'tcp', 'tls']);

/**
 * A WebSocket binding (RFC 7118: Contact host `*.invalid`) is reachable only over its own
 * connection, which a restart closes; the browser registers again when it reconnects. So
 * such bindings are never written, and old rows are not restored.
 */
export function isPersistent(b: Pick<Binding, 'flow'>): boolean {
  return TRANSPORTS.has(b.flow.transport);
}

export function toRow(b: Binding): BindingRow {
  return {
    userId: Number(b.aor),
    bindingKey: b.key,
    contactUri: b.contact,
    contactParams: b.params,
    expiresAtMs: b.expiresAt,
    q: b.q,
    instance: b.instance ?? null,
    regId: b.regId ?? null,
    callId: b.callId,
    cseq: b.cseq,
    path: b.path !== undefined && b.path.length > 0 ? b.path.join(', ') : null,
    received: null,
    sourceTransport: b.flow.transport,
    sourceAddress: b.flow.remoteAddress,
    sourcePort: b.flow.remotePort,
    userAgent: b.userAgent ?? null,
    updatedAt: b.updatedAt,
  };
}

export function fromRow(r: BindingRow): Binding | undefined {
  if (!TRANSPORTS.has(r.sourceTransport)) return undefined;
  return {
    aor: String(r.userId),
    key: r.bindingKey,
    contact: r.contactUri,
    params: r.contactParams ?? '',
    q: r.q ?? 1,
    expiresAt: r.expiresAtMs,
    callId: r.callId,
    cseq: r.cseq,
    ...(r.instance !== null ? { instance: r.instance } : {}),
    ...(r.regId !== null ? { regId: r.regId } : {}),
    ...(r.path !== null ? { path: r.path.split(/,\s*/) } : {}),
    ...(r.userAgent !== null ? { userAgent: r.userAgent } : {}),
    // The connection a stream binding used is gone after a restart; the address remains.
    flow: { transport: r.sourceTransport as FlowTransport, remoteAddress: r.sourceAddress, remotePort: r.sourcePort },
    updatedAt: r.updatedAt,
  };
}

export function bindingPersistence(store: Store): BindingPersistence {
  return {
    saveBindings: (upserts, deletes) =>
      store.saveBindings(upserts.filter(isPersistent).map(toRow), deletes.map((d) => ({ userId: Number(d.aor), bindingKey: d.key }))),
    loadBindings: async (now) => (await store.loadBindings(now)).map(fromRow).filter((b): b is Binding => b !== undefined),
  };
}
