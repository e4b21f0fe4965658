// Ending a call from the middle: when its media has stopped (the engine saw no packet for
// the configured time), the proxy sends a BYE to each side on behalf of the other, as
// Kamailio's dialog module does with dlg_end_dlg. RFC 3261 §15.1.1 / §12.2.1.1: each BYE is
// built from the dialog as its receiver knows it — Request-URI the receiver's Contact (its
// remote target), From/To with the dialog's tags as the *other* side would write them, the
// Call-ID, and a CSeq above any the other side used — and goes straight to the receiver's
// flow (we are the only hop of the route set we recorded).
import type { ProxyCore } from '../proxy/proxy.ts';
import { SipRequest } from '../sip/message.ts';
import { newBranch, type TransactionLayer } from '../sip/transaction/layer.ts';
import { type Destination, viaTransportName } from '../sip/transport.ts';
import { formatHost } from '../sip/uri.ts';

/** One side of an established dialog, as the proxy saw it. */
export interface DialogParty {
  /** The party's Contact URI: where requests to it are addressed (its remote target). */
  readonly target: string;
  /** Where its requests go: the flow it used (NAT address, connection). */
  readonly destination: Destination;
  /** Its own identity header as it wrote it, with its tag (`<sip:a@d>;tag=x`). */
  readonly self: string;
  /** The highest CSeq number it has used in this dialog. */
  cseq: number;
}

export interface DialogInfo {
  readonly callId: string;
  readonly caller: DialogParty;
  readonly callee: DialogParty;
}

/**
 * Sends the two BYEs; resolves when both transactions ended (any final answer, a timeout
 * or a transport failure all count: the dialog is over for us either way).
 */
export function endDialog(d: DialogInfo, layer: TransactionLayer, proxy: ProxyCore, reason: string): Promise<void> {
  const one = (to: DialogParty, from: DialogParty): Promise<void> => new Promise((resolve) => {
    const iface = proxy.interfaceFor(to.destination.transport);
    if (iface === undefined) return resolve();
    const req = new SipRequest('BYE', to.target);
    req.append('via', `SIP/2.0/${viaTransportName(iface.transport)} ${formatHost(iface.host)}:${iface.port};branch=${newBranch()};rport`);
    req.append('max-forwards', '70');
    req.append('from', from.self); // §12.2.1.1: From = the sender's URI and tag
    req.append('to', to.self); // To = the receiver's URI and tag
    req.append('call-id', d.callId);
    // The receiver has seen CSeq numbers up to from.cseq from the other side: go above them.
    req.append('cseq', `${from.cseq + 1} BYE`);
    req.append('reason', reason);
    req.append('content-length', '0');
    try {
      layer.request(req, to.destination, { onResponse: (res) => { if (res.status >= 200) resolve(); }, onTimeout: () => resolve() });
    } catch {
      resolve();
    }
  });
  return Promise.all([one(d.caller, d.callee), one(d.callee, d.caller)]).then(() => undefined);
}
