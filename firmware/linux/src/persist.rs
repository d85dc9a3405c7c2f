//! The bindings file: one line per DHCP binding with its remaining duration (never a wall-clock time,
//! routers may have no RTC). Written whole to a temporary file, synced, and renamed over the old one, so
//! a crash at any point leaves either the old or the new table. Written on bind and release only (not
//! on renewals: router flash wears out), and always before the ACK that depends on it leaves.
//!
//! Format, after a header line `vngate-bindings 1`:
//! `<ip> <mac> <client-id hex or -> <hostname or -> <remaining seconds>`

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use vn_core::dhcp::Binding;
use vn_core::node::command::Reservation;
use vn_core::{Duration, EthernetAddress, Ipv4Address};

const HEADER: &str = "vngate-bindings 1";

/// The bindings file under a state directory.
#[derive(Clone)]
pub struct BindingsFile {
    path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
}

/// A line of the file that could not be read: it is skipped, the others are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// Why.
    pub reason: &'static str,
}

impl BindingsFile {
    /// The file `bindings` in `dir` (created if missing).
    pub fn new(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(Self { path: dir.join("bindings"), tmp: dir.join("bindings.tmp"), dir: dir.to_owned() })
    }

    /// Where the table lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the table. A missing file is an empty table; unreadable lines are reported and skipped.
    pub fn load(&self) -> io::Result<(Vec<Binding>, Vec<BadLine>)> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(e),
        };
        Ok(parse(&text))
    }

    /// Replace the table with `bindings`, durably.
    pub fn store(&self, bindings: impl Iterator<Item = Binding>) -> io::Result<()> {
        let mut out = String::with_capacity(4096);
        out.push_str(HEADER);
        out.push('\n');
        for b in bindings {
            format_line(&mut out, &b);
        }
        let mut f = File::create(&self.tmp)?;
        f.write_all(out.as_bytes())?;
        f.sync_data()?;
        drop(f);
        fs::rename(&self.tmp, &self.path)?;
        File::open(&self.dir)?.sync_all()
    }
}

fn format_line(out: &mut String, b: &Binding) {
    use std::fmt::Write as _;
    let m = b.mac.0;
    let cid = if b.client_id.is_empty() { "-".to_string() } else { hex::encode(&b.client_id) };
    let host = if b.hostname.is_empty() { "-" } else { b.hostname.as_str() };
    let _ = writeln!(
        out,
        "{} {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} {} {} {}",
        b.ip,
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        m[5],
        cid,
        host,
        b.remaining.secs()
    );
}

/// A MAC in `aa:bb:cc:dd:ee:ff` form (hex, colons).
pub fn parse_mac(s: &str) -> Option<EthernetAddress> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(EthernetAddress(mac))
}

fn parse_line(line: &str) -> Result<Binding, &'static str> {
    let f: Vec<&str> = line.split_ascii_whitespace().collect();
    let [ip, mac, cid, host, secs] = f.as_slice() else {
        return Err("expected 5 fields: ip mac client-id hostname seconds");
    };
    let ip: Ipv4Address = ip.parse().map_err(|_| "bad IPv4 address")?;
    let mac = parse_mac(mac).ok_or("bad MAC address")?;
    let mut client_id = heapless::Vec::new();
    if *cid != "-" {
        let bytes = hex::decode(cid).map_err(|_| "bad client-id hex")?;
        client_id.extend_from_slice(&bytes).map_err(|_| "client-id too long")?;
    }
    let mut hostname = heapless::String::new();
    if *host != "-" {
        hostname.push_str(host).map_err(|_| "hostname too long")?;
    }
    let secs: u64 = secs.parse().map_err(|_| "bad remaining seconds")?;
    Ok(Binding { ip, mac, client_id, hostname, remaining: Duration::from_secs(secs) })
}

fn parse(text: &str) -> (Vec<Binding>, Vec<BadLine>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim() == HEADER => {}
        _ => {
            bad.push(BadLine { line: 1, reason: "missing header `vngate-bindings 1`: file ignored" });
            return (good, bad);
        }
    }
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(b) => good.push(b),
            Err(reason) => bad.push(BadLine { line: i + 1, reason }),
        }
    }
    (good, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(last: u8, host: &str) -> Binding {
        let mut hostname = heapless::String::new();
        hostname.push_str(host).unwrap();
        let mut client_id = heapless::Vec::new();
        client_id.extend_from_slice(&[1, 2, 0, 0, 0, 0, last]).unwrap();
        Binding {
            ip: Ipv4Address::new(10, 250, 1, last),
            mac: EthernetAddress([2, 0, 0, 0, 0, last]),
            client_id,
            hostname,
            remaining: Duration::from_secs(1800),
        }
    }

    #[test]
    fn store_then_load_round_trips() {
        let dir = std::env::temp_dir().join(format!("vngate-persist-{}", std::process::id()));
        let f = BindingsFile::new(&dir).unwrap();
        let table = vec![binding(10, "alpha"), binding(11, "")];
        f.store(table.clone().into_iter()).unwrap();
        let (back, bad) = f.load().unwrap();
        assert_eq!(back, table);
        assert!(bad.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_lines_are_reported_and_the_rest_kept() {
        let text = "vngate-bindings 1\n10.250.1.10 02:00:00:00:00:0a - alpha 100\ngarbage\n10.250.1.11 02:00:00:00:00:zz - - 5\n10.250.1.12 02:00:00:00:00:0c 01ff - 7\n";
        let (good, bad) = parse(text);
        assert_eq!(good.len(), 2);
        assert_eq!(
            bad,
            vec![
                BadLine { line: 3, reason: "expected 5 fields: ip mac client-id hostname seconds" },
                BadLine { line: 4, reason: "bad MAC address" }
            ]
        );
        assert_eq!(good[1].client_id.as_slice(), &[1, 0xff]);
    }

    #[test]
    fn missing_file_is_empty_and_foreign_file_ignored() {
        let (good, bad) = parse("something else\n10.250.1.10 02:00:00:00:00:0a - - 1\n");
        assert!(good.is_empty());
        assert_eq!(bad.len(), 1);
    }
}

/// The reservations file (`hostctl reserve`): one line per reserved address, written whole (temporary
/// file, sync, rename) each time a reservation is made, and read at start.
///
/// Format, after a header line `vngate-reservations 1`: `<ip> <mac or -> <name or -> <pin 0|1>`
#[derive(Clone)]
pub struct ReservationsFile {
    path: PathBuf,
    tmp: PathBuf,
}

const RES_HEADER: &str = "vngate-reservations 1";

impl ReservationsFile {
    /// The file `reservations` in `dir`.
    pub fn new(dir: &Path) -> Self {
        Self { path: dir.join("reservations"), tmp: dir.join("reservations.tmp") }
    }

    /// Where the reservations live.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read them. A missing file is none; unreadable lines are reported and skipped.
    pub fn load(&self) -> io::Result<(Vec<Reservation>, Vec<BadLine>)> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(e),
        };
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let mut lines = text.lines().enumerate();
        if lines.next().map(|(_, h)| h.trim()) != Some(RES_HEADER) {
            bad.push(BadLine { line: 1, reason: "missing header `vngate-reservations 1`: file ignored" });
            return Ok((good, bad));
        }
        for (i, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
            match parse_reservation(line) {
                Ok(r) => good.push(r),
                Err(reason) => bad.push(BadLine { line: i + 1, reason }),
            }
        }
        Ok((good, bad))
    }

    /// Replace the file with `reservations`, durably.
    pub fn store<'a>(&self, reservations: impl Iterator<Item = &'a Reservation>) -> io::Result<()> {
        let mut out = format!("{RES_HEADER}\n");
        for r in reservations {
            let mac = r.mac.map_or("-".to_string(), |m| {
                m.0.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
            });
            let name = r.name.as_ref().map_or("-", |n| n.as_str());
            out.push_str(&format!("{} {} {} {}\n", r.ip, mac, name, u8::from(r.pin)));
        }
        let mut f = File::create(&self.tmp)?;
        f.write_all(out.as_bytes())?;
        f.sync_data()?;
        drop(f);
        fs::rename(&self.tmp, &self.path)
    }
}

fn parse_reservation(line: &str) -> Result<Reservation, &'static str> {
    let f: Vec<&str> = line.split_ascii_whitespace().collect();
    let [ip, mac, name, pin] = f.as_slice() else {
        return Err("expected 4 fields: ip mac name pin");
    };
    let ip: Ipv4Address = ip.parse().map_err(|_| "bad IPv4 address")?;
    let mac = if *mac == "-" { None } else { Some(parse_mac(mac).ok_or("bad MAC address")?) };
    let name = match *name {
        "-" => None,
        n => Some(heapless::String::try_from(n).map_err(|_| "name too long")?),
    };
    let pin = match *pin {
        "0" => false,
        "1" => true,
        _ => return Err("pin must be 0 or 1"),
    };
    Ok(Reservation { ip, pin, name, mac })
}

#[cfg(test)]
mod reservation_tests {
    use super::*;

    #[test]
    fn reservations_round_trip_and_bad_lines_are_skipped() {
        let dir = std::env::temp_dir().join(format!("vngate-res-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = ReservationsFile::new(&dir);
        assert!(file.load().unwrap().0.is_empty(), "a missing file is no reservation");
        let rs = vec![
            Reservation {
                ip: Ipv4Address::new(10, 250, 1, 5),
                pin: true,
                name: Some("printer".try_into().unwrap()),
                mac: Some(EthernetAddress([2, 0xcc, 0, 0, 0, 1])),
            },
            Reservation { ip: Ipv4Address::new(10, 250, 1, 6), pin: false, name: None, mac: None },
        ];
        file.store(rs.iter()).unwrap();
        let text = fs::read_to_string(file.path()).unwrap();
        assert_eq!(text, "vngate-reservations 1\n10.250.1.5 02:cc:00:00:00:01 printer 1\n10.250.1.6 - - 0\n");
        assert_eq!(file.load().unwrap(), (rs.clone(), vec![]));
        fs::write(file.path(), format!("{text}10.250.1.7 - - 2\n")).unwrap();
        let (good, bad) = file.load().unwrap();
        assert_eq!(good, rs);
        assert_eq!(bad, vec![BadLine { line: 4, reason: "pin must be 0 or 1" }]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
