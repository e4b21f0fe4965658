// The page frame: which view shows (#view-signin or #view-main), the sign-in form, and the
// header with the registration status (#status), who you are (#me) and sign-out.

import type { PhoneUser } from './api.ts';
import { byId } from './dom.ts';
import type { RegistrationState } from './phone.ts';

const STATUS_TEXT: Record<RegistrationState, string> = {
  registered: 'Online',
  connecting: 'Connecting…',
  disconnected: 'Connection lost, reconnecting…',
  failed: 'Not registered',
};

export class Shell {
  readonly #signin = byId('view-signin', HTMLElement);
  readonly #main = byId('view-main', HTMLElement);
  readonly #status = byId('status', HTMLElement);
  readonly #statusText = byId('status-text', HTMLElement);
  readonly #meName = byId('me-name', HTMLElement);
  readonly #meNumber = byId('me-number', HTMLElement);

  constructor(onSignOut: () => void) {
    byId('signout', HTMLButtonElement).addEventListener('click', onSignOut);
  }

  showSignIn(): void {
    this.#main.hidden = true;
    this.#signin.hidden = false;
    document.title = 'CareFlow Phone – Sign in';
  }

  showMain(user: PhoneUser): void {
    this.#meName.textContent = user.name;
    this.#meNumber.textContent = user.number;
    this.#signin.hidden = true;
    this.#main.hidden = false;
    document.title = 'CareFlow Phone';
  }

  setStatus(state: RegistrationState, detail = ''): void {
    this.#status.dataset.state = state;
    this.#statusText.textContent = STATUS_TEXT[state];
    this.#status.title = detail ? `${STATUS_TEXT[state]} (${detail})` : STATUS_TEXT[state];
  }

  /** While ringing, the tab title says so (the tab may be in the background). */
  setRinging(caller: string | null): void {
    document.title = caller ? `Incoming call – ${caller}` : 'CareFlow Phone';
  }
}

export class SignInView {
  readonly #form = byId('signin', HTMLFormElement);
  readonly #login = byId('login', HTMLInputElement);
  readonly #password = byId('password', HTMLInputElement);
  readonly #submit = byId('signin-submit', HTMLButtonElement);
  readonly #error = byId('signin-error', HTMLElement);

  constructor(onSubmit: (login: string, password: string) => Promise<void>) {
    this.#form.addEventListener('submit', (e) => {
      e.preventDefault();
      const login = this.#login.value.trim();
      const password = this.#password.value;
      if (!login || !password) {
        this.showError('Enter your number or username and your password.');
        (login ? this.#password : this.#login).focus();
        return;
      }
      this.#setBusy(true);
      this.showError('');
      onSubmit(login, password).then(
        () => {
          this.#setBusy(false);
          this.#password.value = '';
        },
        (err: unknown) => {
          this.#setBusy(false);
          this.showError(err instanceof Error ? err.message : String(err));
          this.#password.select();
          this.#password.focus();
        },
      );
    });
  }

  showError(text: string): void {
    this.#error.textContent = text;
    this.#error.hidden = text === '';
    const invalid = text === '' ? 'false' : 'true';
    this.#login.setAttribute('aria-invalid', invalid);
    this.#password.setAttribute('aria-invalid', invalid);
  }

  focus(): void {
    (this.#login.value ? this.#password : this.#login).focus();
  }

  #setBusy(busy: boolean): void {
    this.#submit.disabled = busy;
    this.#submit.textContent = busy ? 'Signing in…' : 'Sign in';
    this.#form.setAttribute('aria-busy', String(busy));
  }
}
