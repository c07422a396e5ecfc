//! Batched UDP receive: one `recvmmsg` reads every datagram a peer's socket holds (up to
//! [`BATCH`]), where a `recvfrom` loop costs one call per datagram plus one that finds the
//! socket empty. The buffers are one set for the whole (single-threaded) run.
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use tokio::net::UdpSocket;

/// Datagrams read per call.
pub const BATCH: usize = 16;
/// Bytes of one receive buffer: more than any datagram the server sends (its MTU is 1200–1500).
const DATAGRAM: usize = 2048;

/// The receive buffers and the source of each datagram of the last batch.
pub struct RecvBatch {
    buffers: Vec<[u8; DATAGRAM]>,
    lengths: [usize; BATCH],
    sources: [Option<SocketAddr>; BATCH],
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            buffers: vec![[0; DATAGRAM]; BATCH],
            lengths: [0; BATCH],
            sources: [None; BATCH],
        }
    }
}

impl RecvBatch {
    /// Reads what `socket` holds now, up to [`BATCH`] datagrams; `Ok(0)` when it holds nothing.
    /// A batch shorter than [`BATCH`] emptied the socket, so its readiness is cleared then
    /// (tokio clears it only on `WouldBlock`; without this every batch would cost one more call
    /// that finds the socket empty). A datagram arriving after the call raises a new readiness
    /// event, which clearing the old one does not lose.
    pub fn read(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let mut read = 0;
        let result = socket.try_io(tokio::io::Interest::READABLE, || {
            read = self.recv_many(socket)?;
            if read < BATCH {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(read),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(read),
            Err(e) => Err(e),
        }
    }

    /// Datagram `i` of the last batch and its source.
    pub fn datagram(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        Some((self.sources[i]?, &self.buffers[i][..self.lengths[i]]))
    }

    #[cfg(target_os = "linux")]
    fn recv_many(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: all-zero is a valid value of these plain C structs.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, buffer) in self.buffers.iter_mut().enumerate() {
            iovecs[i] = libc::iovec {
                iov_base: buffer.as_mut_ptr().cast(),
                iov_len: DATAGRAM,
            };
            let header = &mut headers[i].msg_hdr;
            header.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            header.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = &mut iovecs[i];
            header.msg_iovlen = 1;
        }
        // SAFETY: every header points into `names`, `iovecs` and `self.buffers`, alive and
        // unmoved for the call; the kernel writes at most the lengths given.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            self.lengths[i] = headers[i].msg_len as usize;
            self.sources[i] = source_of(&names[i]);
        }
        Ok(n)
    }

    /// Elsewhere than Linux: one `recvfrom`.
    #[cfg(not(target_os = "linux"))]
    fn recv_many(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let (n, source) = socket.try_recv_from(&mut self.buffers[0])?;
        self.lengths[0] = n;
        self.sources[0] = Some(source);
        Ok(1)
    }
}

/// The socket address the kernel wrote into `name` (IPv4 or IPv6).
#[cfg(target_os = "linux")]
fn source_of(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
    let storage: *const libc::sockaddr_storage = name;
    match i32::from(name.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { storage.cast::<libc::sockaddr_in>().read() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(sin.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { storage.cast::<libc::sockaddr_in6>().read() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id).into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_call_reads_every_waiting_datagram_with_its_source_and_then_reads_none() {
        let receiver = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let sender = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let to = receiver.local_addr().expect("address");
        for n in 0..3u8 {
            sender.send_to(&[n; 100], to).await.expect("send");
        }
        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        while got.len() < 3 {
            receiver.readable().await.expect("readable");
            let n = batch.read(&receiver).expect("read");
            for i in 0..n {
                let (source, bytes) = batch.datagram(i).expect("datagram");
                got.push((source, bytes.to_vec()));
            }
        }
        let from = sender.local_addr().expect("address");
        let want: Vec<_> = (0..3u8).map(|n| (from, vec![n; 100])).collect();
        assert_eq!(got, want);
        assert_eq!(batch.read(&receiver).expect("read"), 0);
    }

    #[tokio::test]
    async fn more_datagrams_than_a_batch_take_several_reads_and_none_is_lost() {
        let receiver = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let sender = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let to = receiver.local_addr().expect("address");
        let total = BATCH * 2 + 3;
        for n in 0..total {
            sender.send_to(&[n as u8; 10], to).await.expect("send");
        }
        let mut batch = RecvBatch::default();
        let mut seen = Vec::new();
        while seen.len() < total {
            receiver.readable().await.expect("readable");
            let n = batch.read(&receiver).expect("read");
            seen.extend((0..n).map(|i| batch.datagram(i).expect("datagram").1[0]));
        }
        assert_eq!(seen, (0..total).map(|n| n as u8).collect::<Vec<_>>());
    }
}
