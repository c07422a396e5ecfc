// The "flat" media-event dialect of the tutorial era (membrane-protocol.md §2):
// `{"type": ..., "data": ...}`, no `custom` wrapping, `data` omitted when there is none.

import type { SerializedMediaEvent } from "./types";

/** A decoded media event. */
export interface MediaEvent {
  type: string;
  data?: any;
}

/** Builds an event; `data` undefined leaves the key out of the JSON (as `leave` needs). */
export function generateMediaEvent(type: string, data?: any): MediaEvent {
  return data === undefined ? { type } : { type, data };
}

// Maps become plain objects: the app may pass metadata as a Map (the original default was
// `new Map()`, which must still serialise as `{}`), and a Map with entries should not lose them.
function mapsAsObjects(_key: string, value: any): any {
  return value instanceof Map ? Object.fromEntries(value) : value;
}

/** JSON text for the wire. */
export function serializeMediaEvent(event: MediaEvent): SerializedMediaEvent {
  return JSON.stringify(event, mapsAsObjects);
}

/** Parses an incoming event; throws on anything that is not an object with a string `type`. */
export function deserializeMediaEvent(serialized: SerializedMediaEvent): MediaEvent {
  const event = JSON.parse(serialized);
  if (event === null || typeof event !== "object" || typeof event.type !== "string") {
    throw new Error(`not a media event: ${serialized.slice(0, 200)}`);
  }
  return event as MediaEvent;
}
