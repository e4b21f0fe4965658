// Entry point of the CareFlow web phone: starts the app, registers the service worker (the
// offline app shell) and exposes a small hook for the browser tests.

import type { RTCSession } from 'jssip/lib/RTCSession';
import type { UA } from 'jssip/lib/UA';
import { App } from './app.ts';
import type { CallState } from './call-info.ts';

interface CareflowTestHook {
  ua: () => UA | null;
  session: () => RTCSession | null;
  pc: () => RTCPeerConnection | null;
  state: () => { registered: boolean; callState: CallState };
}

declare global {
  interface Window {
    careflow: CareflowTestHook;
  }
}

const app = new App();
const phone = app.phone;

window.careflow = {
  ua: () => phone.ua,
  session: () => phone.session,
  pc: () => phone.session?.connection ?? null,
  state: () => ({ registered: phone.registered, callState: phone.callState }),
};

app.start();

if ('serviceWorker' in navigator) {
  window.addEventListener('load', () => {
    navigator.serviceWorker.register('/sw.js', { scope: '/' }).catch((err: unknown) => {
      console.warn('CareFlow: the service worker could not be registered', err);
    });
  });
}
