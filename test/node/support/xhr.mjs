// A minimal XMLHttpRequest for Node, over node:http, for phoenix.js 1.6's LongPoll transport
// (1.6 only knows XDomainRequest and XMLHttpRequest; 1.8 falls back to fetch by itself).
//
// It implements exactly the part of the XHR standard that phoenix.js touches, with the
// standard's event order, so the client runs the same code paths as in a browser:
//   open(method, url, async) · timeout · setRequestHeader · send(body) · abort()
//   readyState · status · responseText · onreadystatechange · onload · onerror · ontimeout
// Success: readyState 4, `readystatechange`, then `load`.
// Network error: readyState 4 with status 0 and an empty body, `readystatechange`, then `error`.
// Timeout: readyState 4 with status 0, `readystatechange`, then `timeout` (no `error`).
// Loopback http:// only: the tests never talk to anything else.
import http from "node:http";

const UNSENT = 0;
const OPENED = 1;
const HEADERS_RECEIVED = 2;
const LOADING = 3;
const DONE = 4;

/** XMLHttpRequest subset (see the header comment) backed by node:http. */
export class NodeXMLHttpRequest {
  static UNSENT = UNSENT;
  static OPENED = OPENED;
  static HEADERS_RECEIVED = HEADERS_RECEIVED;
  static LOADING = LOADING;
  static DONE = DONE;

  constructor() {
    this.readyState = UNSENT;
    this.status = 0;
    this.statusText = "";
    this.responseText = "";
    this.timeout = 0;
    this.onreadystatechange = null;
    this.onload = null;
    this.onerror = null;
    this.ontimeout = null;
    this.onabort = null;
    this._method = null;
    this._url = null;
    this._headers = {};
    this._request = null;
    this._timer = null;
    this._finished = false;
  }

  open(method, url, async = true) {
    if (!async) throw new Error("NodeXMLHttpRequest: synchronous requests are not supported");
    const parsed = new URL(url);
    if (parsed.protocol !== "http:") throw new Error(`NodeXMLHttpRequest: only http:// is supported, got ${url}`);
    this._method = method.toUpperCase();
    this._url = parsed;
    this._headers = {};
    this._finished = false;
    this._setState(OPENED);
  }

  setRequestHeader(name, value) {
    if (this.readyState !== OPENED) throw new Error("NodeXMLHttpRequest: setRequestHeader before open()");
    this._headers[name.toLowerCase()] = String(value);
  }

  getResponseHeader(name) {
    return (this._responseHeaders && this._responseHeaders[name.toLowerCase()]) ?? null;
  }

  send(body = null) {
    if (this.readyState !== OPENED) throw new Error("NodeXMLHttpRequest: send() before open()");
    const headers = { ...this._headers };
    let payload = null;
    if (body !== null && body !== undefined && this._method !== "GET" && this._method !== "HEAD") {
      payload = Buffer.from(typeof body === "string" ? body : new Uint8Array(body));
      if (typeof body === "string" && !headers["content-type"]) headers["content-type"] = "text/plain;charset=UTF-8";
      headers["content-length"] = String(payload.length);
    }
    const request = http.request(this._url, { method: this._method, headers }, (response) => {
      this.status = response.statusCode;
      this.statusText = response.statusMessage;
      this._responseHeaders = response.headers;
      this._setState(HEADERS_RECEIVED);
      const chunks = [];
      response.on("data", (chunk) => chunks.push(chunk));
      response.on("end", () => {
        if (this._finished) return;
        this._finished = true;
        clearTimeout(this._timer);
        this.responseText = Buffer.concat(chunks).toString("utf8");
        this._setState(DONE);
        this.onload && this.onload({ type: "load", target: this });
      });
      response.on("error", (error) => this._fail("error", error));
    });
    request.on("error", (error) => this._fail("error", error));
    this._request = request;
    if (this.timeout > 0) {
      this._timer = setTimeout(() => this._fail("timeout"), this.timeout);
    }
    request.end(payload ?? undefined);
  }

  abort() {
    if (this._finished || !this._request) return;
    this._finished = true;
    clearTimeout(this._timer);
    this._request.destroy();
    this.status = 0;
    this.responseText = "";
    this._setState(DONE);
    this.onabort && this.onabort({ type: "abort", target: this });
    this.readyState = UNSENT;
  }

  _fail(kind, _error) {
    if (this._finished) return;
    this._finished = true;
    clearTimeout(this._timer);
    if (this._request) this._request.destroy();
    this.status = 0;
    this.responseText = "";
    this._setState(DONE);
    const handler = kind === "timeout" ? this.ontimeout : this.onerror;
    handler && handler({ type: kind, target: this });
  }

  _setState(state) {
    this.readyState = state;
    this.onreadystatechange && this.onreadystatechange({ type: "readystatechange", target: this });
  }
}
