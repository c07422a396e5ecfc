// The room page's chrome around the tutorial DOM: product name and title, the extra buttons
// (screen share, people, chat, invite link), the side panel (participants, chat), the aria-live
// announcer and the "You left" screen. All created here; the served DOM is only added to.

import { MAX_CHAT_CHARS, PRODUCT_NAME } from "./consts";
import { el } from "./dom";

function controlButton(id: string, text: string): HTMLButtonElement {
  const b = el("button", { id, className: "controls-button", text, attrs: { type: "button" } });
  return b;
}

/** A chat message as the server sends it (src/room/chat.rs). */
export interface ChatMessage {
  peerId: string;
  displayName: string;
  text: string;
  sentAt: number;
}

/** Handles to the chrome's interactive parts. */
export class Shell {
  readonly shareButton: HTMLButtonElement;
  readonly peopleButton: HTMLButtonElement;
  readonly chatButton: HTMLButtonElement;
  readonly inviteButton: HTMLButtonElement;
  readonly selfViewButton: HTMLButtonElement;
  private readonly panel: HTMLElement;
  private readonly peoplePanel: HTMLElement;
  private readonly chatPanel: HTMLElement;
  private readonly peopleList: HTMLUListElement;
  private readonly chatLog: HTMLElement;
  private readonly chatList: HTMLOListElement;
  readonly chatForm: HTMLFormElement;
  readonly chatInput: HTMLInputElement;
  private readonly chatError: HTMLElement;
  private readonly announcer: HTMLElement;
  private unread = 0;
  private count = 0;

  constructor(private readonly roomId: string) {
    const room = document.getElementById("room")!;
    document.title = `${roomId} · ${PRODUCT_NAME}`;
    const productHeading = room.querySelector(".room-header h2");
    if (productHeading) productHeading.textContent = PRODUCT_NAME;
    room.querySelector(".room-header")?.classList.add("room-topbar");

    // Header actions: people count and the invite link.
    const actions = el("div", { className: "header-actions" });
    this.peopleButton = controlButton("toggle-people", "People (1)");
    this.peopleButton.classList.add("header-button");
    this.peopleButton.setAttribute("aria-expanded", "false");
    this.peopleButton.setAttribute("aria-controls", "side-panel");
    this.inviteButton = controlButton("copy-invite", "Copy invite link");
    this.inviteButton.classList.add("header-button");
    actions.append(this.peopleButton, this.inviteButton);
    room.querySelector(".room-header")?.appendChild(actions);

    // Control bar: screen share and chat before Disconnect, self-view after the toggles.
    const controls = document.getElementById("controls")!;
    controls.setAttribute("role", "toolbar");
    controls.setAttribute("aria-label", "Call controls");
    const disconnect = document.getElementById("disconnect");
    if (disconnect) disconnect.textContent = "Leave call";
    this.shareButton = controlButton("toggle-screen", "Share screen");
    this.shareButton.setAttribute("aria-pressed", "false");
    if (!navigator.mediaDevices || !("getDisplayMedia" in navigator.mediaDevices)) {
      this.shareButton.hidden = true;
    }
    this.chatButton = controlButton("toggle-chat", "Chat");
    this.chatButton.setAttribute("aria-expanded", "false");
    this.chatButton.setAttribute("aria-controls", "side-panel");
    this.selfViewButton = controlButton("toggle-self-view", "Float self-view");
    this.selfViewButton.setAttribute("aria-pressed", "false");
    controls.insertBefore(this.shareButton, disconnect);
    controls.insertBefore(this.chatButton, disconnect);
    controls.insertBefore(this.selfViewButton, disconnect);

    // The side panel: people and chat.
    this.panel = el("aside", { id: "side-panel", className: "side-panel", attrs: { "aria-label": "Side panel" } });
    this.panel.hidden = true;
    this.peoplePanel = el("section", { className: "panel-section", attrs: { "aria-labelledby": "people-heading" } });
    const peopleHeading = el("h2", { id: "people-heading", text: "People (1)" });
    this.peopleList = el("ul", { className: "people-list", attrs: { "aria-labelledby": "people-heading" } });
    this.peoplePanel.append(peopleHeading, this.peopleList);
    // The tutorial's "Participants: …" line stays (it is the §5.1 contract) but lives here now.
    const legacyList = document.getElementById("participants-list");
    if (legacyList) {
      legacyList.classList.add("sr-only");
      this.peoplePanel.appendChild(legacyList);
    }

    this.chatPanel = el("section", { className: "panel-section", attrs: { "aria-labelledby": "chat-heading" } });
    const chatHeading = el("h2", { id: "chat-heading", text: "Chat" });
    this.chatLog = el("div", { className: "chat-log", attrs: { role: "log", "aria-label": "Chat messages" } });
    this.chatList = el("ol", { className: "chat-list" });
    this.chatLog.appendChild(this.chatList);
    this.chatForm = el("form", { className: "chat-form" });
    const label = el("label", { text: "Message", attrs: { for: "chat-input" }, className: "sr-only" });
    this.chatInput = el("input", {
      id: "chat-input",
      attrs: { type: "text", maxlength: String(MAX_CHAT_CHARS), autocomplete: "off", placeholder: "Send a message to everyone" },
    });
    const send = el("button", { text: "Send", attrs: { type: "submit" }, className: "chat-send" });
    this.chatError = el("p", { className: "chat-error", attrs: { role: "alert" } });
    this.chatForm.append(label, this.chatInput, send);
    this.chatPanel.append(chatHeading, this.chatLog, this.chatError, this.chatForm);
    const close = el("button", { text: "Close panel", className: "panel-close", attrs: { type: "button" } });
    close.addEventListener("click", () => this.showPanel(undefined));
    this.panel.append(close, this.peoplePanel, this.chatPanel);
    room.querySelector("section")?.appendChild(this.panel);

    this.announcer = el("div", { id: "announcer", className: "sr-only", attrs: { "aria-live": "polite", role: "status" } });
    room.appendChild(this.announcer);

    this.peopleButton.addEventListener("click", () =>
      this.showPanel(this.panel.dataset.show === "people" && !this.panel.hidden ? undefined : "people"),
    );
    this.chatButton.addEventListener("click", () =>
      this.showPanel(this.panel.dataset.show === "chat" && !this.panel.hidden ? undefined : "chat"),
    );
    this.inviteButton.addEventListener("click", () => void this.copyInvite());
  }

  /** The invite link: the room's page, never anyone's name. */
  get inviteLink(): string {
    return `${location.origin}/room/${encodeURIComponent(this.roomId)}`;
  }

  private async copyInvite(): Promise<void> {
    try {
      await navigator.clipboard.writeText(this.inviteLink);
      this.announce("Invite link copied");
      this.inviteButton.textContent = "Link copied";
    } catch {
      // No clipboard access: show the link selected, so the user can copy it.
      window.prompt("Copy this invite link", this.inviteLink);
    }
    window.setTimeout(() => (this.inviteButton.textContent = "Copy invite link"), 2000);
  }

  /** Opens the side panel on `which`, or closes it. */
  showPanel(which: "people" | "chat" | undefined): void {
    this.panel.hidden = which === undefined;
    if (which) this.panel.dataset.show = which;
    this.peoplePanel.hidden = which !== "people";
    this.chatPanel.hidden = which !== "chat";
    document.getElementById("room")!.dataset.panel = which ?? "none";
    this.peopleButton.setAttribute("aria-expanded", String(which === "people"));
    this.chatButton.setAttribute("aria-expanded", String(which === "chat"));
    if (which === "chat") {
      this.unread = 0;
      this.showChatButton();
      this.chatInput.focus();
    }
  }

  /** Says `text` to screen readers (the polite live region). */
  announce(text: string): void {
    // A fresh node per message, so repeated messages are read again.
    const line = el("p", { text });
    this.announcer.replaceChildren(line);
  }

  /** The participant list (us first) and the count. */
  setPeople(people: { name: string; you: boolean; micOff?: boolean }[]): void {
    this.count = people.length;
    const items = people.map((p) => {
      const li = el("li", { text: p.you ? `${p.name} (you)` : p.name });
      if (p.micOff) li.appendChild(el("span", { className: "people-muted", text: " · microphone off" }));
      return li;
    });
    this.peopleList.replaceChildren(...items);
    this.peopleButton.textContent = `People (${this.count})`;
    document.getElementById("people-heading")!.textContent = `People (${this.count})`;
  }

  /** Appends a chat message (text only, never markup). */
  addChatMessage(message: ChatMessage, mine: boolean): void {
    const li = el("li", { className: mine ? "chat-message chat-mine" : "chat-message" });
    const meta = el("div", { className: "chat-meta" });
    const who = el("span", { className: "chat-sender", text: mine ? `${message.displayName} (you)` : message.displayName });
    const when = new Date(message.sentAt);
    const time = el("time", {
      className: "chat-time",
      text: when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
      attrs: { datetime: when.toISOString() },
    });
    meta.append(who, document.createTextNode(" "), time);
    li.append(meta, el("p", { className: "chat-text", text: message.text }));
    this.chatList.appendChild(li);
    this.chatLog.scrollTop = this.chatLog.scrollHeight;
    if (this.chatPanel.hidden || this.panel.hidden) {
      this.unread++;
      this.showChatButton();
      this.announce(`Message from ${message.displayName}: ${message.text}`);
    }
  }

  /** Shows why the last chat message was not sent (empty string hides it). */
  setChatError(text: string): void {
    this.chatError.textContent = text;
  }

  private showChatButton(): void {
    this.chatButton.textContent = this.unread > 0 ? `Chat (${this.unread} new)` : "Chat";
  }

  /** Turns the call's controls off (after leaving or a failure): they cannot do anything now. */
  disableCallControls(): void {
    for (const id of ["toggle-mic", "toggle-camera", "toggle-screen", "disconnect"]) {
      const b = document.getElementById(id) as HTMLButtonElement | null;
      if (b) b.disabled = true;
    }
    this.chatInput.disabled = true;
  }

  /** The full-page "You left" (or refused / lost) screen, with Rejoin and a way to the lobby. */
  showEndScreen(title: string, detail: string, onRejoin: () => void): void {
    const room = document.getElementById("room")!;
    room.dataset.phase = "ended";
    let screen = document.getElementById("end-screen");
    screen?.remove();
    screen = el("main", { id: "end-screen", className: "end-screen", attrs: { "aria-labelledby": "end-title" } });
    const card = el("div", { className: "end-card" });
    const h = el("h1", { id: "end-title", text: title });
    const p = el("p", { text: detail });
    const rejoin = el("button", { id: "rejoin", className: "primary-button", text: "Rejoin", attrs: { type: "button" } });
    rejoin.addEventListener("click", onRejoin);
    const lobby = el("a", { className: "secondary-link", text: "Back to the lobby", attrs: { href: `/?room_id=${encodeURIComponent(this.roomId)}` } });
    card.append(h, p, rejoin, lobby);
    screen.appendChild(card);
    room.appendChild(screen);
    rejoin.focus();
    this.announce(title);
  }
}
