// The pre-join screen of /room/<id> opened without a name (an invite link): camera preview,
// microphone level, device pickers, microphone/camera toggles that carry into the call, the name
// field (prefilled from the last visit) and Join. Nothing talks to the server before Join.

import { MEDIA_CONSTRAINTS, PRODUCT_NAME, STORAGE_DEVICES, STORAGE_DISPLAY_NAME } from "./consts";
import { el } from "./dom";
import { LevelMeter } from "./presence";

/** What the user chose on the pre-join screen. */
export interface JoinChoice {
  displayName: string;
  /** The preview's stream (kept for the call), if any device could be opened. */
  stream?: MediaStream;
  audio: boolean;
  video: boolean;
}

/** Saved device ids per kind (`audioinput`, `videoinput`, `audiooutput`). */
export type DeviceChoice = Partial<Record<MediaDeviceKind, string>>;

/** The devices chosen on an earlier visit. */
export function savedDevices(): DeviceChoice {
  try {
    return JSON.parse(localStorage.getItem(STORAGE_DEVICES) ?? "{}") as DeviceChoice;
  } catch {
    return {};
  }
}

function saveDevice(kind: MediaDeviceKind, id: string): void {
  const devices = savedDevices();
  devices[kind] = id;
  try {
    localStorage.setItem(STORAGE_DEVICES, JSON.stringify(devices));
  } catch {
    // private mode: nothing remembered
  }
}

/** Constraints for the saved (or default) devices. */
export function constraintsFor(devices: DeviceChoice): MediaStreamConstraints {
  const video = MEDIA_CONSTRAINTS.video as MediaTrackConstraints;
  return {
    audio: devices.audioinput ? { deviceId: { ideal: devices.audioinput } } : true,
    video: devices.videoinput ? { ...video, deviceId: { ideal: devices.videoinput } } : video,
  };
}

/** Why the browser refused the camera/microphone, in words. */
export function describeMediaError(e: unknown): string {
  const name = (e as { name?: string })?.name;
  if (name === "NotAllowedError") return "The browser was not allowed to use your camera and microphone.";
  if (name === "NotFoundError") return "No camera or microphone was found.";
  if (name === "NotReadableError") return "Your camera or microphone is in use by another application.";
  return `Could not use your camera or microphone (${String(e)}).`;
}

/** Opens camera and microphone, else whichever one works; `undefined` with the last error if none. */
export async function openMedia(
  devices: DeviceChoice,
): Promise<{ stream?: MediaStream; error?: unknown }> {
  const both = constraintsFor(devices);
  const attempts: MediaStreamConstraints[] = [both, { audio: both.audio }, { video: both.video }];
  let error: unknown;
  for (const constraints of attempts) {
    try {
      return { stream: await navigator.mediaDevices.getUserMedia(constraints) };
    } catch (e) {
      error = e;
    }
  }
  return { error };
}

function labelled(id: string, text: string, control: HTMLElement): HTMLElement {
  const wrap = el("div", { className: "prejoin-field" });
  const label = el("label", { text, attrs: { for: id } });
  control.id = id;
  wrap.append(label, control);
  return wrap;
}

/** Shows the pre-join screen and resolves when the user clicks Join. */
export function showPrejoin(roomId: string): Promise<JoinChoice> {
  const room = document.getElementById("room")!;
  room.dataset.phase = "prejoin";
  const screen = el("main", { id: "prejoin", className: "prejoin", attrs: { "aria-labelledby": "prejoin-title" } });

  const preview = el("div", { className: "prejoin-preview" });
  const video = el("video", { className: "flip-horizontally", attrs: { "aria-label": "Camera preview" } });
  video.muted = true;
  video.autoplay = true;
  video.playsInline = true;
  const off = el("div", { className: "prejoin-camera-off", text: "Camera is off" });
  const meter = el("div", {
    className: "level-meter",
    attrs: {
      role: "meter",
      "aria-label": "Microphone level",
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-valuenow": "0",
    },
  });
  const meterFill = el("span");
  meter.appendChild(meterFill);
  const toggles = el("div", { className: "prejoin-toggles" });
  const micButton = el("button", { id: "prejoin-mic", attrs: { type: "button" } });
  const camButton = el("button", { id: "prejoin-camera", attrs: { type: "button" } });
  toggles.append(micButton, camButton);
  preview.append(video, off, meter, toggles);

  const form = el("form", { className: "prejoin-form" });
  const title = el("h1", { id: "prejoin-title", text: "Ready to join?" });
  const where = el("p", { className: "prejoin-room", text: `Room ${roomId} · ${PRODUCT_NAME}` });
  const name = el("input", { attrs: { type: "text", autocomplete: "name" } });
  name.required = true;
  name.maxLength = 100;
  name.value = localStorage.getItem(STORAGE_DISPLAY_NAME) ?? "";
  const cameraSelect = el("select");
  const micSelect = el("select");
  const speakerSelect = el("select");
  const error = el("p", { className: "prejoin-error", attrs: { role: "alert" } });
  const join = el("button", { className: "primary-button", text: "Join now", attrs: { type: "submit" } });
  const speakerField = labelled("prejoin-speaker-select", "Speaker", speakerSelect);
  // Choosing the speaker needs HTMLMediaElement.setSinkId (not in every browser).
  speakerField.hidden = !("setSinkId" in HTMLMediaElement.prototype);
  form.append(
    title,
    where,
    labelled("prejoin-name", "Your name", name),
    labelled("prejoin-camera-select", "Camera", cameraSelect),
    labelled("prejoin-mic-select", "Microphone", micSelect),
    speakerField,
    error,
    join,
  );
  screen.append(preview, form);
  room.appendChild(screen);

  let stream: MediaStream | undefined;
  let wantAudio = true;
  let wantVideo = true;
  const level = new LevelMeter();
  let meterTimer = 0;

  const showToggles = () => {
    const mic = stream?.getAudioTracks()[0];
    const cam = stream?.getVideoTracks()[0];
    micButton.disabled = !mic;
    camButton.disabled = !cam;
    micButton.setAttribute("aria-pressed", String(!wantAudio || !mic));
    camButton.setAttribute("aria-pressed", String(!wantVideo || !cam));
    micButton.textContent = wantAudio && mic ? "Mute microphone" : "Unmute microphone";
    camButton.textContent = wantVideo && cam ? "Turn camera off" : "Turn camera on";
    if (mic) mic.enabled = wantAudio;
    if (cam) cam.enabled = wantVideo;
    preview.dataset.video = wantVideo && cam ? "on" : "off";
  };

  const fillSelect = async () => {
    const devices = await navigator.mediaDevices.enumerateDevices().catch(() => []);
    const current = {
      audioinput: stream?.getAudioTracks()[0]?.getSettings().deviceId,
      videoinput: stream?.getVideoTracks()[0]?.getSettings().deviceId,
      audiooutput: savedDevices().audiooutput,
    };
    const fill = (select: HTMLSelectElement, kind: MediaDeviceKind, fallback: string) => {
      const options = devices
        .filter((d) => d.kind === kind && d.deviceId)
        .map((d, i) => {
          const o = document.createElement("option");
          o.value = d.deviceId;
          o.textContent = d.label || `${fallback} ${i + 1}`;
          o.selected = d.deviceId === current[kind as keyof typeof current];
          return o;
        });
      if (options.length === 0) {
        const none = document.createElement("option");
        none.value = "";
        none.textContent = `No ${fallback.toLowerCase()} available`;
        options.push(none);
      }
      select.replaceChildren(...options);
      select.disabled = options.length === 1 && options[0].value === "";
    };
    fill(cameraSelect, "videoinput", "Camera");
    fill(micSelect, "audioinput", "Microphone");
    fill(speakerSelect, "audiooutput", "Speaker");
  };

  const open = async () => {
    stream?.getTracks().forEach((t) => t.stop());
    const opened = await openMedia(savedDevices());
    stream = opened.stream;
    error.textContent = opened.error && !stream ? `${describeMediaError(opened.error)} You can still join to watch and listen.` : "";
    // The pickers are filled before the preview shows, so a user who sees themselves also sees
    // which camera and microphone they are on (Firefox lists devices well after the first frame).
    await fillSelect();
    video.srcObject = stream ?? null;
    video.play().catch(() => {});
    level.attach(stream);
    showToggles();
  };

  micButton.addEventListener("click", () => {
    wantAudio = !wantAudio;
    showToggles();
  });
  camButton.addEventListener("click", () => {
    wantVideo = !wantVideo;
    showToggles();
  });
  cameraSelect.addEventListener("change", () => {
    saveDevice("videoinput", cameraSelect.value);
    void open();
  });
  micSelect.addEventListener("change", () => {
    saveDevice("audioinput", micSelect.value);
    void open();
  });
  speakerSelect.addEventListener("change", () => saveDevice("audiooutput", speakerSelect.value));

  meterTimer = window.setInterval(() => {
    const value = wantAudio ? Math.round(Math.min(1, level.level() * 4) * 100) : 0;
    meterFill.style.width = `${value}%`;
    meter.setAttribute("aria-valuenow", String(value));
  }, 100);

  void open();
  name.focus();

  return new Promise((resolve) => {
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const displayName = name.value.trim();
      if (!displayName) {
        error.textContent = "Please enter your name.";
        name.focus();
        return;
      }
      try {
        localStorage.setItem(STORAGE_DISPLAY_NAME, displayName);
      } catch {
        // private mode
      }
      window.clearInterval(meterTimer);
      level.detach();
      screen.remove();
      delete room.dataset.phase;
      resolve({ displayName, stream, audio: wantAudio, video: wantVideo });
    });
  });
}
