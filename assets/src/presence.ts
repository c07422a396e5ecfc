// Presence on tiles: who is speaking (audio levels) and how their network is (getStats).
// Our own level comes from a WebAudio analyser on the microphone; remote levels from the RTP
// receivers (getSynchronizationSources' audioLevel, else the inbound-rtp stats' audioLevel).

import { PRESENCE_INTERVAL_MS, SPEAKING_LEVEL } from "./consts";
import { setTileNetwork, setTileSpeaking, type NetworkQuality } from "./room_ui";

/** The level (0..1, RMS) of a stream's audio track, through a WebAudio analyser. */
export class LevelMeter {
  private context?: AudioContext;
  private analyser?: AnalyserNode;
  private source?: MediaStreamAudioSourceNode;
  private buffer?: Float32Array<ArrayBuffer>;
  private track?: MediaStreamTrack;

  /** Measures `stream`'s first audio track (replacing the previous one); `undefined` stops. */
  attach(stream: MediaStream | undefined): void {
    const track = stream?.getAudioTracks()[0];
    if (track === this.track) return;
    this.source?.disconnect();
    this.source = undefined;
    this.track = track;
    if (!track) return;
    try {
      this.context ??= new AudioContext();
      void this.context.resume().catch(() => {});
      this.resumeOnGesture(this.context);
      this.analyser ??= this.context.createAnalyser();
      this.analyser.fftSize = 512;
      this.buffer = new Float32Array(new ArrayBuffer(this.analyser.fftSize * 4));
      this.source = this.context.createMediaStreamSource(new MediaStream([track]));
      this.source.connect(this.analyser);
    } catch {
      // No WebAudio: the level stays 0.
    }
  }

  /**
   * Browsers whose autoplay policy blocks WebAudio without a user gesture (Firefox by default,
   * Chromium without a prior gesture) keep a new context suspended, and the meter would stay at
   * 0: try to resume it on every click, tap or key press until it runs (a resume that the
   * browser refused, or that is still waiting for an audio device, is tried again).
   */
  private resumeOnGesture(context: AudioContext): void {
    if (context.state === "running") return;
    const events = ["pointerdown", "keydown", "touchend"] as const;
    const stop = () => {
      for (const e of events) document.removeEventListener(e, resume, true);
      context.removeEventListener("statechange", onState);
    };
    const resume = () => {
      if (this.context !== context || context.state === "closed") return stop();
      if (context.state !== "running") void context.resume().catch(() => {});
    };
    const onState = () => {
      if (context.state === "running" || context.state === "closed") stop();
    };
    for (const e of events) document.addEventListener(e, resume, true);
    context.addEventListener("statechange", onState);
  }

  /** The current level, 0..1 (0 while the track is disabled). */
  level(): number {
    if (!this.analyser || !this.buffer || !this.track?.enabled) return 0;
    this.analyser.getFloatTimeDomainData(this.buffer);
    let sum = 0;
    for (const v of this.buffer) sum += v * v;
    return Math.sqrt(sum / this.buffer.length);
  }

  /** Stops measuring and closes the audio context. */
  detach(): void {
    this.source?.disconnect();
    void this.context?.close().catch(() => {});
    this.context = undefined;
    this.analyser = undefined;
    this.source = undefined;
    this.track = undefined;
  }
}

/** Last counters of one receiver, for per-interval loss and frame rate. */
interface Counters {
  received: number;
  lost: number;
}

/**
 * Grades network quality from loss (fraction), round-trip time (s) and frame rate (video only):
 * poor beyond 10 % loss, 0.5 s RTT or under 5 fps; fair beyond 3 %, 0.25 s or under 15 fps.
 */
export function gradeNetwork(loss: number, rtt: number | undefined, fps: number | undefined): NetworkQuality {
  const r = rtt ?? 0;
  if (loss > 0.1 || r > 0.5 || (fps !== undefined && fps < 5)) return "poor";
  if (loss > 0.03 || r > 0.25 || (fps !== undefined && fps < 15)) return "fair";
  return "good";
}

/** Polls levels and stats and writes them onto the tiles. */
export class PresenceMonitor {
  private timer = 0;
  private ticks = 0;
  private readonly counters = new WeakMap<RTCRtpReceiver, Counters>();
  private readonly speakingUntil = new Map<string, number>();
  /** Remote audio levels from the last stats poll, by receiver (when SSRC levels are missing). */
  private readonly statsLevel = new WeakMap<RTCRtpReceiver, number>();

  constructor(
    private readonly connection: () => RTCPeerConnection | undefined,
    private readonly local: LevelMeter,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = window.setInterval(() => void this.tick(), PRESENCE_INTERVAL_MS);
  }

  stop(): void {
    window.clearInterval(this.timer);
    this.timer = 0;
  }

  /** Which tile shows `track` (the tiles' `<video>` elements hold per-tile streams). */
  private tileOfTrack(track: MediaStreamTrack): string | undefined {
    for (const video of document.querySelectorAll<HTMLVideoElement>("#videos-grid video")) {
      const stream = video.srcObject as MediaStream | null;
      if (stream && stream.getTracks().includes(track)) {
        return (video.closest("div[name='video-feed']") as HTMLElement | null)?.dataset.peerId;
      }
    }
    return undefined;
  }

  private speaking(tileId: string, level: number): void {
    const now = Date.now();
    // Hold the indicator a moment so it does not flicker between syllables.
    if (level > SPEAKING_LEVEL) this.speakingUntil.set(tileId, now + 600);
    setTileSpeaking(tileId, (this.speakingUntil.get(tileId) ?? 0) > now);
  }

  private async tick(): Promise<void> {
    this.speaking("local-peer", this.local.level());
    const pc = this.connection();
    if (!pc || pc.connectionState === "closed") return;
    const receivers = pc.getReceivers();
    for (const receiver of receivers) {
      if (receiver.track.kind !== "audio") continue;
      const tile = this.tileOfTrack(receiver.track);
      if (!tile) continue;
      const sources = receiver.getSynchronizationSources?.() ?? [];
      const level = sources[0]?.audioLevel ?? this.statsLevel.get(receiver) ?? 0;
      this.speaking(tile, level);
    }
    // Network stats once a second.
    if (this.ticks++ % Math.round(1000 / PRESENCE_INTERVAL_MS) !== 0) return;
    let rtt: number | undefined;
    const report = await pc.getStats().catch(() => undefined);
    report?.forEach((s) => {
      if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) {
        rtt = s.currentRoundTripTime;
      }
    });
    let localLoss = 0;
    report?.forEach((s) => {
      if (s.type === "remote-inbound-rtp" && typeof s.fractionLost === "number") {
        localLoss = Math.max(localLoss, s.fractionLost);
      }
    });
    setTileNetwork("local-peer", rtt === undefined ? "unknown" : gradeNetwork(localLoss, rtt, undefined), rtt === undefined ? "" : `${Math.round(rtt * 1000)} ms`);
    for (const receiver of receivers) {
      const tile = this.tileOfTrack(receiver.track);
      if (!tile) continue;
      const stats = await receiver.getStats().catch(() => undefined);
      let inbound: Record<string, number> | undefined;
      stats?.forEach((s) => {
        if (s.type === "inbound-rtp") inbound = s;
      });
      if (!inbound) continue;
      if (receiver.track.kind === "audio") {
        if (typeof inbound.audioLevel === "number") this.statsLevel.set(receiver, inbound.audioLevel);
        continue;
      }
      const before = this.counters.get(receiver) ?? { received: 0, lost: 0 };
      const now = { received: inbound.packetsReceived ?? 0, lost: Math.max(0, inbound.packetsLost ?? 0) };
      this.counters.set(receiver, now);
      const got = now.received - before.received;
      const lost = now.lost - before.lost;
      const loss = got + lost > 0 ? lost / (got + lost) : 0;
      const feed = document.getElementById(`feed-${tile}`);
      const fps = feed?.dataset.video === "off" ? undefined : inbound.framesPerSecond;
      if (got === 0 && before.received === 0) continue;
      const quality = gradeNetwork(loss, rtt, fps);
      const detail = [
        `${Math.round(loss * 100)} % loss`,
        rtt !== undefined ? `${Math.round(rtt * 1000)} ms` : "",
        fps !== undefined ? `${Math.round(fps)} fps` : "",
      ].filter(Boolean).join(", ");
      setTileNetwork(tile, quality, detail);
    }
  }
}
