//! Which processes serve a TCP address: the process that holds the socket listening on the
//! upstream's port, and its descendants (vLLM's engine runs in a child of the API server).
//! Linux only, read from `/proc`: `net/tcp` and `net/tcp6` list the listening sockets with
//! their inodes, each process's `fd/*` links name its sockets as `socket:[inode]`, and
//! `stat` gives each process's parent. Everything is read under a root directory passed in,
//! so tests build a `/proc` of their own; the parsers are pure functions.
//!
//! What cannot be seen is said in words: an upstream on another host or in another network
//! namespace (no listening socket here), a process in another PID namespace or of another
//! user (the socket is here, its holder is not visible).

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::Path;

/// One listening TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListeningSocket {
    /// The local address it is bound to (`0.0.0.0`/`::` for every address).
    pub addr: SocketAddr,
    /// The socket's inode, which `/proc/<pid>/fd` links name.
    pub inode: u64,
}

/// The processes that serve an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    /// The address the matching socket listens on.
    pub listen: SocketAddr,
    /// The processes holding the listening socket (normally one), ascending.
    pub holders: Vec<u32>,
    /// Their descendants, ascending: workers and engines that hold the model's memory.
    pub descendants: Vec<u32>,
}

impl Serving {
    /// The holders and the descendants, ascending.
    pub fn pids(&self) -> Vec<u32> {
        let mut all: Vec<u32> = self
            .holders
            .iter()
            .chain(&self.descendants)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

/// The TCP state `LISTEN` in `/proc/net/tcp` (`TCP_LISTEN` = 10).
const STATE_LISTEN: &str = "0A";

/// Parses one `ADDR:PORT` field of `/proc/net/tcp` (8 hex digits) or `tcp6` (32). The
/// kernel prints each 32-bit word of the address as a number in the machine's byte order,
/// and the port in host order.
fn parse_endpoint(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The listening sockets in the text of `/proc/net/tcp` or `/proc/net/tcp6`; lines that do
/// not parse are skipped (the header, a format this parser does not know).
pub fn parse_net_tcp(text: &str) -> Vec<ListeningSocket> {
    text.lines()
        .filter_map(|line| {
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) != Some(&STATE_LISTEN) {
                return None;
            }
            let addr = parse_endpoint(fields.get(1)?)?;
            let inode = fields.get(9)?.parse().ok()?;
            (inode != 0).then_some(ListeningSocket { addr, inode })
        })
        .collect()
}

/// The inode of an fd link's target `socket:[12345]`.
pub fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The parent pid in the text of `/proc/<pid>/stat`. The command name (field 2) is in
/// parentheses and may itself hold spaces and parentheses, so the fields after it are
/// counted from the last `)`.
pub fn parent_pid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // state ppid ...
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether a socket listening on `listen` takes connections to `target`: the same port,
/// and the same address or a wildcard (`::` also takes IPv4 on a dual-stack socket).
pub fn accepts(listen: SocketAddr, target: SocketAddr) -> bool {
    if listen.port() != target.port() {
        return false;
    }
    let (l, t) = (listen.ip(), target.ip());
    match (l, t) {
        (IpAddr::V4(l), IpAddr::V4(t)) => l.is_unspecified() || l == t,
        (IpAddr::V6(l), IpAddr::V6(t)) => l.is_unspecified() || l == t,
        (IpAddr::V6(l), IpAddr::V4(t)) => l.is_unspecified() || l.to_ipv4_mapped() == Some(t),
        (IpAddr::V4(l), IpAddr::V6(t)) => t
            .to_ipv4_mapped()
            .is_some_and(|t| l.is_unspecified() || l == t),
    }
}

/// Whether `ip` is an address of this machine (in this network namespace): a loopback
/// address, or one a socket can be bound to.
pub fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

fn describe(targets: &[SocketAddr]) -> String {
    let list: Vec<String> = targets.iter().map(ToString::to_string).collect();
    list.join(", ")
}

/// Finds the processes serving any of `targets` (the upstream's resolved addresses), reading
/// `/proc` under `proc_root`. The reason in words when they cannot be seen.
pub fn find(proc_root: &Path, targets: &[SocketAddr]) -> Result<Serving, String> {
    let Some(first) = targets.first() else {
        return Err("the upstream's host resolved to no address".to_owned());
    };
    let local: Vec<SocketAddr> = targets
        .iter()
        .copied()
        .filter(|t| is_local(t.ip()))
        .collect();
    if local.is_empty() {
        return Err(format!(
            "the upstream ({}) is not an address of this machine: the server runs on \
             another host, so its process and memory cannot be seen from here",
            describe(targets)
        ));
    }
    let mut sockets = Vec::new();
    let mut read_errors = Vec::new();
    for file in ["net/tcp", "net/tcp6"] {
        match std::fs::read_to_string(proc_root.join(file)) {
            Ok(text) => sockets.extend(parse_net_tcp(&text)),
            Err(e) => read_errors.push(format!("{}: {e}", proc_root.join(file).display())),
        }
    }
    if read_errors.len() == 2 {
        return Err(format!(
            "cannot read the socket tables: {}",
            read_errors.join("; ")
        ));
    }
    let matching: Vec<ListeningSocket> = sockets
        .into_iter()
        .filter(|s| local.iter().any(|t| accepts(s.addr, *t)))
        .collect();
    let Some(listen) = matching.first().map(|s| s.addr) else {
        return Err(format!(
            "nothing listens on port {} in ollameter's network namespace: the server runs \
             in a container with its own network (or behind a port forward), so its process \
             cannot be found by its socket; telemetry.server_pids names it by hand",
            first.port()
        ));
    };
    let inodes: BTreeSet<u64> = matching.iter().map(|s| s.inode).collect();
    let table = scan(proc_root, &inodes);
    if table.holders.is_empty() {
        let why = if table.unreadable > 0 {
            format!(
                "{} processes' open files could not be read (another user's: run ollameter as \
                 the server's user or with CAP_SYS_PTRACE)",
                table.unreadable
            )
        } else {
            "its process is in another PID namespace (a container: share its PID namespace, \
             e.g. pid: \"service:llama\")"
                .to_owned()
        };
        return Err(format!(
            "a socket listens on {listen}, but no visible process holds it: {why}"
        ));
    }
    let descendants = descendants(&table.parents, &table.holders);
    Ok(Serving {
        listen,
        holders: table.holders.into_iter().collect(),
        descendants,
    })
}

struct Table {
    holders: BTreeSet<u32>,
    parents: HashMap<u32, u32>,
    unreadable: usize,
}

/// One pass over `/proc/<pid>`: who holds one of `inodes`, and every process's parent.
/// Processes that exit during the pass are skipped.
fn scan(proc_root: &Path, inodes: &BTreeSet<u64>) -> Table {
    let mut table = Table {
        holders: BTreeSet::new(),
        parents: HashMap::new(),
        unreadable: 0,
    };
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return table;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        if let Ok(stat) = std::fs::read_to_string(dir.join("stat"))
            && let Some(ppid) = parent_pid(&stat)
        {
            table.parents.insert(pid, ppid);
        }
        let fds = match std::fs::read_dir(dir.join("fd")) {
            Ok(fds) => fds,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                table.unreadable += 1;
                continue;
            }
            Err(_) => continue,
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|t| t.to_str().and_then(socket_inode))
                .is_some_and(|inode| inodes.contains(&inode))
        });
        if holds {
            table.holders.insert(pid);
        }
    }
    table
}

/// Every process below `roots` in the parent map, ascending, the roots left out.
fn descendants(parents: &HashMap<u32, u32>, roots: &BTreeSet<u32>) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, ppid) in parents {
        children.entry(*ppid).or_default().push(*pid);
    }
    let mut found = BTreeSet::new();
    let mut stack: Vec<u32> = roots.iter().copied().collect();
    while let Some(pid) = stack.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            if !roots.contains(child) && found.insert(*child) {
                stack.push(*child);
            }
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 20 4 30 10 -1
   3: 00000000:1F92 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 100 0 0 10 0
";

    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F93 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6464 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F94 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6565 1 0000000000000000 100 0 0 10 0
";

    fn at(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn parses_listening_sockets_only() {
        // Little-endian machines print 127.0.0.1 as 0100007F.
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_net_tcp(TCP),
                vec![
                    ListeningSocket {
                        addr: at("127.0.0.1:8080"),
                        inode: 4242
                    },
                    ListeningSocket {
                        addr: at("0.0.0.0:8081"),
                        inode: 4343
                    },
                ]
            );
            assert_eq!(
                parse_net_tcp(TCP6),
                vec![
                    ListeningSocket {
                        addr: at("[::]:8083"),
                        inode: 6464
                    },
                    ListeningSocket {
                        addr: at("[::1]:8084"),
                        inode: 6565
                    },
                ]
            );
        }
        assert_eq!(parse_net_tcp("garbage\n\n 0: zz:zz 0A"), Vec::new());
    }

    #[test]
    fn reads_fd_links_and_stat_parents() {
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(
            parent_pid("123 (llama-server) S 77 123 1 0 -1 4194560 1 0"),
            Some(77)
        );
        // A name with spaces and parentheses.
        assert_eq!(parent_pid("9 (a) b (c) R 5 9 9"), Some(5));
        assert_eq!(parent_pid("garbage"), None);
    }

    #[test]
    fn wildcards_take_their_family_and_dual_stack_takes_ipv4() {
        assert!(accepts(at("0.0.0.0:80"), at("127.0.0.1:80")));
        assert!(!accepts(at("0.0.0.0:80"), at("127.0.0.1:81")));
        assert!(accepts(at("127.0.0.1:80"), at("127.0.0.1:80")));
        assert!(!accepts(at("127.0.0.2:80"), at("127.0.0.1:80")));
        assert!(accepts(at("[::]:80"), at("127.0.0.1:80")));
        assert!(accepts(at("[::]:80"), at("[::1]:80")));
        assert!(!accepts(at("0.0.0.0:80"), at("[::1]:80")));
        assert!(accepts(at("[::ffff:127.0.0.1]:80"), at("127.0.0.1:80")));
        assert!(!accepts(at("[::1]:80"), at("127.0.0.1:80")));
    }

    #[test]
    fn loopback_and_own_addresses_are_local_others_are_not() {
        assert!(is_local("127.0.0.1".parse().expect("ip")));
        assert!(is_local("::1".parse().expect("ip")));
        // TEST-NET-3: never assigned to a machine.
        assert!(!is_local("203.0.113.7".parse().expect("ip")));
    }

    /// A `/proc` of our own: `pid` holds `fds` (link targets), with parent `ppid`.
    fn fake_proc(tcp: &str, procs: &[(u32, u32, &[&str])]) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("net")).expect("net");
        std::fs::write(root.path().join("net/tcp"), tcp).expect("tcp");
        for (pid, ppid, fds) in procs {
            let dir = root.path().join(pid.to_string());
            std::fs::create_dir_all(dir.join("fd")).expect("fd dir");
            std::fs::write(
                dir.join("stat"),
                format!("{pid} (proc {pid}) S {ppid} 1 1 0"),
            )
            .expect("stat");
            for (i, target) in fds.iter().enumerate() {
                std::os::unix::fs::symlink(target, dir.join("fd").join(i.to_string()))
                    .expect("fd link");
            }
        }
        root
    }

    #[test]
    fn finds_the_holder_and_its_descendants_in_a_built_proc() {
        if cfg!(target_endian = "big") {
            return;
        }
        let root = fake_proc(
            TCP,
            &[
                (1, 0, &["/dev/null"]),
                // The API server holds the socket; its engine child and grandchild hold the model.
                (100, 1, &["/dev/null", "socket:[5555]", "socket:[4242]"]),
                (101, 100, &["pipe:[1]"]),
                (102, 101, &[]),
                // Unrelated: a client of the same port, and a server on another port.
                (200, 1, &["socket:[5555]"]),
                (300, 1, &["socket:[4343]"]),
            ],
        );
        let serving = find(root.path(), &[at("127.0.0.1:8080")]).expect("found");
        assert_eq!(
            serving,
            Serving {
                listen: at("127.0.0.1:8080"),
                holders: vec![100],
                descendants: vec![101, 102],
            }
        );
        assert_eq!(serving.pids(), vec![100, 101, 102]);
        // The wildcard socket on 8081 takes 127.0.0.1.
        let other = find(root.path(), &[at("127.0.0.1:8081")]).expect("found");
        assert_eq!(other.holders, vec![300]);
        assert!(other.descendants.is_empty());
    }

    #[test]
    fn says_why_when_nothing_can_be_seen() {
        let root = fake_proc(TCP, &[(1, 0, &[])]);
        let none = find(root.path(), &[at("127.0.0.1:9999")]).expect_err("no socket");
        assert!(none.contains("nothing listens on port 9999"), "{none}");
        if cfg!(target_endian = "little") {
            // The socket exists but no visible process holds it.
            let hidden = find(root.path(), &[at("127.0.0.1:8080")]).expect_err("no holder");
            assert!(hidden.contains("another PID namespace"), "{hidden}");
        }
        let remote = find(root.path(), &[at("203.0.113.7:8080")]).expect_err("remote");
        assert!(remote.contains("another host"), "{remote}");
        let unreadable =
            find(Path::new("/nonexistent-proc"), &[at("127.0.0.1:1")]).expect_err("no tables");
        assert!(
            unreadable.contains("cannot read the socket tables"),
            "{unreadable}"
        );
    }

    #[test]
    fn finds_this_process_behind_a_real_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let addr = listener.local_addr().expect("addr");
        let serving = find(Path::new("/proc"), &[addr]).expect("this process");
        assert_eq!(serving.listen, addr);
        assert_eq!(serving.holders, vec![std::process::id()]);
        drop(listener);
        let gone = find(Path::new("/proc"), &[addr]).expect_err("closed");
        assert!(gone.contains("nothing listens"), "{gone}");
    }
}
