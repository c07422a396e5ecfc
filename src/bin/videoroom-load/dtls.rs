//! The load peers' DTLS: str0m's own (dimpl with AWS-LC), with one setting changed: the first
//! retransmission of a handshake flight after 50 ms, as browsers do (NSS's initial DTLS timer
//! and WebRTC's BoringSSL setting are both 50 ms), where dimpl waits 1 s. The tutorial client's
//! re-offers restart ICE, and a flight sent while the path is being re-checked is lost; a
//! browser sends it again 50 ms later, a load peer with dimpl's setting a second later, which
//! would make the load generator report a join time no browser sees.
//!
//! Each session also leaves the SRTP keys it exports in its peer's [`KeySink`] (handed over
//! through [`KEY_SINK`] while the peer builds its `Rtc`), for the direct receive path of
//! [`crate::srtp`].
use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};
use str0m::crypto::{CryptoError, CryptoProvider};

use crate::srtp::{KeySink, SrtpKeys};

thread_local! {
    /// The sink of the next session made on this thread: a peer sets it just before it builds
    /// its `Rtc` (which makes its DTLS session), so the session knows whose keys it holds.
    pub static KEY_SINK: RefCell<Option<KeySink>> = const { RefCell::new(None) };
}

/// The first retransmission timeout of a DTLS flight (doubling after each retransmission).
pub const FLIGHT_START_RTO: Duration = Duration::from_millis(50);
/// Retransmissions of a flight before the handshake fails: with [`FLIGHT_START_RTO`] doubling,
/// 9 wait ~51 s in all, as long as dimpl's defaults (4 from 1 s: ~31 s) and past its 40 s
/// handshake deadline, so a slow server is waited for as long as before (4 would give up after
/// 1.5 s: a saturated server then loses peers it would have served).
pub const FLIGHT_RETRIES: usize = 9;

/// str0m's default crypto with [`BrowserLikeDtls`] for DTLS.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static DTLS: BrowserLikeDtls = BrowserLikeDtls;
    let mut provider = str0m::crypto::from_feature_flags();
    provider.dtls_provider = &DTLS;
    Arc::new(provider)
}

/// Makes dimpl DTLS sessions with [`FLIGHT_START_RTO`].
#[derive(Debug)]
pub struct BrowserLikeDtls;

impl DtlsProvider for BrowserLikeDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        // As str0m's provider: ICE has checked the return path, so no server cookie.
        let mut builder = dimpl::Config::builder()
            .use_server_cookie(false)
            .flight_start_rto(FLIGHT_START_RTO)
            .flight_retries(FLIGHT_RETRIES);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let config = Arc::new(
            builder
                .build()
                .map_err(|e| CryptoError::Other(format!("DTLS config: {e}")))?,
        );
        let cert = cert.clone();
        let dtls = match version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => {
                return Err(CryptoError::Other(format!(
                    "unsupported DTLS version {other:?}"
                )));
            }
        };
        let sink = KEY_SINK.with(|s| s.borrow_mut().take());
        Ok(Box::new(Session { dtls, sink }))
    }
}

/// One dimpl session behind str0m's DTLS interface.
struct Session {
    dtls: dimpl::Dtls,
    /// Where the exported SRTP keys go (none for a session made outside a peer).
    sink: Option<KeySink>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

impl DtlsInstance for Session {
    fn set_active(&mut self, active: bool) {
        self.dtls.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.dtls.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let output = self.dtls.poll_output(buf);
        if let (DtlsOutput::KeyingMaterial(material, profile), Some(sink)) = (&output, &self.sink)
            && let Ok(mut slot) = sink.lock()
        {
            *slot = Some(SrtpKeys {
                material: material.as_ref().to_vec(),
                profile: *profile,
                client: self.dtls.is_active(),
            });
        }
        output
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.dtls.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.dtls.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.dtls.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.dtls.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.dtls.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.dtls.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.dtls.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `dtls` until its timer: the packets it sent and when it wants the timer.
    fn flush(dtls: &mut dyn DtlsInstance) -> (usize, Instant) {
        let mut buf = vec![0u8; 2048];
        let mut packets = 0;
        loop {
            match dtls.poll_output(&mut buf) {
                DtlsOutput::Packet(_) => packets += 1,
                DtlsOutput::Timeout(at) => return (packets, at),
                _ => {}
            }
        }
    }

    #[test]
    fn an_unanswered_client_hello_is_sent_again_after_about_50_ms_then_after_twice_that() {
        let cert = BrowserLikeDtls.generate_certificate().expect("certificate");
        let t0 = Instant::now();
        let mut dtls = BrowserLikeDtls
            .new_dtls(&cert, t0, DtlsVersion::Dtls12, None)
            .expect("session");
        dtls.set_active(true);
        dtls.handle_timeout(t0).expect("start");
        let (sent, first_timer) = flush(dtls.as_mut());
        assert!(sent >= 1, "the ClientHello goes out at once");
        // dimpl spreads each timer by ±25% (so that many sessions do not retransmit in step).
        let waited = first_timer - t0;
        let (low, high) = (
            FLIGHT_START_RTO.mul_f64(0.75),
            FLIGHT_START_RTO.mul_f64(1.25),
        );
        assert!(
            low <= waited && waited <= high,
            "first timer after {waited:?}"
        );
        dtls.handle_timeout(first_timer).expect("retransmit");
        let (again, second_timer) = flush(dtls.as_mut());
        assert!(again >= 1, "the flight is sent again when the timer fires");
        let backoff = second_timer - first_timer;
        assert!(
            2 * low <= backoff && backoff <= 2 * high,
            "second timer after {backoff:?} (the first after {waited:?})"
        );
        // A server that never answers is given up on no sooner than with dimpl's defaults.
        let mut at = second_timer;
        let mut resent = 0;
        while dtls.handle_timeout(at).is_ok() {
            let (sent, next) = flush(dtls.as_mut());
            if sent == 0 || next - t0 > Duration::from_secs(60) {
                break;
            }
            resent += 1;
            at = next;
        }
        assert!(
            at - t0 >= Duration::from_secs(30),
            "gave up {:?} after the start ({resent} more retransmissions)",
            at - t0
        );
    }
}
