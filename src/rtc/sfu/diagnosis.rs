//! Why a peer's media did not connect: what its client offered, whether any of its
//! connectivity checks reached us, and the likely cause, worked out [`DIAGNOSE_AFTER`] its
//! first offer if ICE and DTLS are not up by then (sans-IO: the SFU feeds the tallies and asks
//! [`diagnose`]).
//!
//! The causes, tried in this order:
//! 1. a check arrived ([`ConnectCause::ChecksUnanswered`]): the client reaches us but the
//!    connection does not complete, so our answers are lost on the way back;
//! 2. every server candidate is a loopback address and the client offered none
//!    ([`ConnectCause::LoopbackServer`]): Firefox gathers no loopback candidates, so a server
//!    bound to 127.0.0.1 is unreachable for it even on the same machine;
//! 3. no server candidate is a public address while the client offered a public
//!    server-reflexive or relay candidate ([`ConnectCause::ExternalIpMissing`]): the client
//!    comes over the internet and we advertise only private addresses;
//! 4. otherwise ([`ConnectCause::Blocked`]): nothing arrived, so the UDP port (and the ICE-TCP
//!    port) are blocked between the client and us, or the advertised address is not reachable.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use str0m::Candidate;
use str0m::net::Protocol;

/// How long after its first offer a peer whose media is not up is diagnosed: browsers connect
/// within a second or two when a path exists, and ICE-TCP fallback needs a few seconds more.
pub const DIAGNOSE_AFTER: Duration = Duration::from_secs(8);

/// Most distinct candidate lines a [`CandidateTally`] counts (browsers offer a few dozen at
/// most; the engine limits trickled candidates per offer as well).
const MAX_TALLIED: usize = 128;

/// The remote candidates a client offered (in its SDP and trickled), counted by type, each
/// distinct line once (re-offers repeat them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CandidateTally {
    /// The lines counted so far.
    seen: BTreeSet<String>,
    /// `"host/udp"`, `"srflx/tcp"`, … → how many.
    by_type: BTreeMap<String, u32>,
    /// Candidates on a loopback address.
    loopback: u32,
    /// Candidates on any other address (mDNS `.local` names included).
    other: u32,
    /// Server-reflexive or relay candidates on a public address.
    public_reflexive: u32,
}

impl CandidateTally {
    /// Counts one candidate line (`candidate:…`, with or without `a=`); mDNS host names, which
    /// str0m cannot use, count as `host/<proto>` too.
    pub fn add(&mut self, line: &str) {
        let line = line.trim();
        let line = line.strip_prefix("a=").unwrap_or(line);
        if self.seen.len() >= MAX_TALLIED || !self.seen.insert(line.to_owned()) {
            return;
        }
        match Candidate::from_sdp_string(line) {
            Ok(c) => {
                let proto = match c.proto() {
                    Protocol::Udp => "udp",
                    _ => "tcp",
                };
                let kind = c.kind().to_string();
                *self.by_type.entry(format!("{kind}/{proto}")).or_default() += 1;
                let ip = c.addr().ip();
                if ip.is_loopback() {
                    self.loopback += 1;
                } else {
                    self.other += 1;
                }
                if kind != "host" && kind != "prflx" && is_public(ip) {
                    self.public_reflexive += 1;
                }
            }
            Err(_) => {
                // `candidate:f 1 udp 2122 x.local 5000 typ host`: field 3 is the protocol.
                let mut fields = line.split_whitespace();
                let proto = fields.nth(2).map(str::to_ascii_lowercase);
                if let Some(proto @ ("udp" | "tcp")) = proto.as_deref() {
                    *self.by_type.entry(format!("host/{proto}")).or_default() += 1;
                    self.other += 1;
                }
            }
        }
    }

    /// `"host/udp x2, srflx/udp x1"` (or `"none"`), plus `" (loopback only)"` when every
    /// candidate is on a loopback address.
    pub fn summary(&self) -> String {
        if self.by_type.is_empty() {
            return "none".into();
        }
        let mut s = String::new();
        for (i, (kind, n)) in self.by_type.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(s, "{sep}{kind} x{n}");
        }
        if self.other == 0 {
            s.push_str(" (loopback only)");
        }
        s
    }
}

/// Connectivity checks (STUN binding requests) that reached the peer's session, by transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckTally {
    /// Over the UDP socket.
    pub udp: u32,
    /// Over ICE-TCP connections.
    pub tcp: u32,
}

impl CheckTally {
    /// Counts one check that came over `protocol`.
    pub fn add(&mut self, protocol: Protocol) {
        match protocol {
            Protocol::Udp => self.udp = self.udp.saturating_add(1),
            _ => self.tcp = self.tcp.saturating_add(1),
        }
    }
}

/// The likely reason a peer's media did not connect (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectCause {
    /// Checks arrived, but ICE/DTLS did not complete.
    ChecksUnanswered,
    /// The server advertises only loopback addresses and the client offered none.
    LoopbackServer,
    /// The server advertises only private addresses to a client coming over the internet.
    ExternalIpMissing,
    /// No check arrived: the media ports are blocked or the advertised address is unreachable.
    Blocked,
}

impl ConnectCause {
    /// The metric label and the `cause` of the client's notice.
    pub fn label(self) -> &'static str {
        match self {
            ConnectCause::ChecksUnanswered => "checks_unanswered",
            ConnectCause::LoopbackServer => "loopback_server",
            ConnectCause::ExternalIpMissing => "external_ip_missing",
            ConnectCause::Blocked => "blocked",
        }
    }

    /// What the operator reads in the log line.
    pub fn operator_text(self) -> &'static str {
        match self {
            ConnectCause::ChecksUnanswered => {
                "checks reached the server but ICE/DTLS did not complete: its answers do not reach the client (outbound UDP/TCP from the media ports dropped?)"
            }
            ConnectCause::LoopbackServer => {
                "the server advertises only loopback addresses and the client offered no loopback candidate (Firefox never does): bind to a LAN address"
            }
            ConnectCause::ExternalIpMissing => {
                "the client comes over the internet but the server advertises only private addresses: set EXTERNAL_IP"
            }
            ConnectCause::Blocked => {
                "no check reached the server: UDP (and the ICE-TCP port) blocked between client and server, or the advertised addresses are not reachable from it (EXTERNAL_IP?)"
            }
        }
    }

    /// What the user is shown (our words; no addresses).
    pub fn client_message(self) -> &'static str {
        match self {
            ConnectCause::ChecksUnanswered => {
                "Media cannot connect: your browser reaches the server, but the connection does not complete. A firewall may be dropping the server's answers."
            }
            ConnectCause::LoopbackServer => {
                "Media cannot connect: the server listens only on a loopback address (127.0.0.1), which this browser does not use for media. Open the server by its network address instead."
            }
            ConnectCause::ExternalIpMissing => {
                "Media cannot connect: the server advertises only private addresses. Its operator must set EXTERNAL_IP to its public address."
            }
            ConnectCause::Blocked => {
                "Media cannot connect: this network seems to block the media ports (UDP, and TCP to the media port). Try another network, or ask the operator which ports to open."
            }
        }
    }
}

/// The likely cause for a peer that offered `offered`, sent `checks`, to a server advertising
/// `server` (its UDP and TCP host candidates).
pub fn diagnose(
    offered: &CandidateTally,
    checks: CheckTally,
    server: &[SocketAddr],
) -> ConnectCause {
    if checks.udp + checks.tcp > 0 {
        return ConnectCause::ChecksUnanswered;
    }
    if !server.is_empty() && server.iter().all(|a| a.ip().is_loopback()) && offered.loopback == 0 {
        return ConnectCause::LoopbackServer;
    }
    if !server.iter().any(|a| is_public(a.ip())) && offered.public_reflexive > 0 {
        return ConnectCause::ExternalIpMissing;
    }
    ConnectCause::Blocked
}

/// Whether `ip` is reachable over the internet (not loopback, private, link-local, CGNAT,
/// unique-local or unspecified).
fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let cgnat = o[0] == 100 && (o[1] & 0xC0) == 64;
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || cgnat)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            let unique_local = (first & 0xFE00) == 0xFC00;
            let link_local = (first & 0xFFC0) == 0xFE80;
            !(v6.is_loopback() || v6.is_unspecified() || unique_local || link_local)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(lines: &[&str]) -> CandidateTally {
        let mut t = CandidateTally::default();
        for l in lines {
            t.add(l);
        }
        t
    }

    const FIREFOX_HOST: &str = "candidate:0 1 UDP 2122252543 192.168.1.20 50123 typ host";
    const FIREFOX_TCP: &str = "candidate:1 1 TCP 2105524479 192.168.1.20 9 typ host tcptype active";
    const SRFLX_PUBLIC: &str = "a=candidate:2 1 udp 1686052607 198.51.100.9 40000 typ srflx raddr 192.168.1.20 rport 50123";
    const CHROME_MDNS: &str = "candidate:3 1 udp 2113937151 0b1c2d3e-aaaa-bbbb-cccc-0123456789ab.local 54321 typ host generation 0";
    const LOOPBACK: &str = "candidate:4 1 udp 2122260223 127.0.0.1 40001 typ host";

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn the_tally_counts_types_and_protocols_and_mdns_names_as_host() {
        let t = tally(&[FIREFOX_HOST, FIREFOX_TCP, SRFLX_PUBLIC, CHROME_MDNS]);
        assert_eq!(t.summary(), "host/tcp x1, host/udp x2, srflx/udp x1");
        let again = tally(&[FIREFOX_HOST, &format!("a={FIREFOX_HOST}"), FIREFOX_HOST]);
        assert_eq!(
            again.summary(),
            "host/udp x1",
            "a re-offered candidate counts once"
        );
        assert_eq!(tally(&[LOOPBACK]).summary(), "host/udp x1 (loopback only)");
        assert_eq!(tally(&[]).summary(), "none");
        assert_eq!(tally(&["candidate:garbage"]).summary(), "none");
    }

    #[test]
    fn firefox_without_loopback_candidates_against_a_loopback_server_is_told_so() {
        let server = addrs(&["127.0.0.1:50000", "127.0.0.1:4000"]);
        let t = tally(&[FIREFOX_HOST, FIREFOX_TCP]);
        assert_eq!(
            diagnose(&t, CheckTally::default(), &server),
            ConnectCause::LoopbackServer
        );
        assert_eq!(
            diagnose(&tally(&[LOOPBACK]), CheckTally::default(), &server),
            ConnectCause::Blocked
        );
    }

    #[test]
    fn a_check_that_arrived_means_the_answers_are_lost_whatever_was_offered() {
        let server = addrs(&["127.0.0.1:50000"]);
        let mut checks = CheckTally::default();
        checks.add(Protocol::Tcp);
        assert_eq!(checks, CheckTally { udp: 0, tcp: 1 });
        assert_eq!(
            diagnose(&tally(&[FIREFOX_HOST]), checks, &server),
            ConnectCause::ChecksUnanswered
        );
    }

    #[test]
    fn a_public_client_against_private_only_candidates_misses_external_ip() {
        let private = addrs(&["10.0.0.5:50000"]);
        let public = addrs(&["10.0.0.5:50000", "203.0.113.7:50000"]);
        let t = tally(&[FIREFOX_HOST, SRFLX_PUBLIC]);
        assert_eq!(
            diagnose(&t, CheckTally::default(), &private),
            ConnectCause::ExternalIpMissing
        );
        assert_eq!(
            diagnose(&t, CheckTally::default(), &public),
            ConnectCause::Blocked
        );
    }
}
