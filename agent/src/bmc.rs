//! The machine's own BMC, in-band: through the kernel's IPMI driver
//! (`ipmi_si` finds a KCS/SMIC/BT interface from ACPI or SMBIOS,
//! `ipmi_devintf` gives `/dev/ipmi0`), Get LAN Configuration Parameters
//! reads the BMC's LAN address and MAC, which rackboot's intake joins this
//! machine to its BMC by. Absent interface: nothing, quickly.

use serde::Serialize;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// What the BMC says its LAN channel is.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Bmc {
    /// The LAN channel read (1 on most servers).
    pub channel: u8,
    pub ip: String,
    pub mac: String,
}

// <linux/ipmi.h>, x86_64 layouts.
#[repr(C)]
struct SystemInterfaceAddr {
    addr_type: libc::c_int,
    channel: libc::c_short,
    lun: libc::c_uchar,
}

#[repr(C)]
struct IpmiMsg {
    netfn: libc::c_uchar,
    cmd: libc::c_uchar,
    data_len: libc::c_ushort,
    data: *mut libc::c_uchar,
}

#[repr(C)]
struct IpmiReq {
    addr: *mut libc::c_uchar,
    addr_len: libc::c_uint,
    msgid: libc::c_long,
    msg: IpmiMsg,
}

#[repr(C)]
struct IpmiAddr {
    addr_type: libc::c_int,
    channel: libc::c_short,
    data: [libc::c_char; 32],
}

#[repr(C)]
struct IpmiRecv {
    recv_type: libc::c_int,
    addr: *mut libc::c_uchar,
    addr_len: libc::c_uint,
    msgid: libc::c_long,
    msg: IpmiMsg,
}

const IPMI_SYSTEM_INTERFACE_ADDR_TYPE: libc::c_int = 0x0c;
const IPMI_BMC_CHANNEL: libc::c_short = 0x0f;

/// `_IOC(dir, 'i', nr, size)`.
const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((b'i' as u64) << 8) | nr
}
const IPMICTL_SEND_COMMAND: u64 = ioc(2, 13, std::mem::size_of::<IpmiReq>());
const IPMICTL_RECEIVE_MSG_TRUNC: u64 = ioc(3, 11, std::mem::size_of::<IpmiRecv>());

/// Sends one request to the BMC and returns its response data (completion
/// code first).
fn request(dev: &std::fs::File, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut addr = SystemInterfaceAddr {
        addr_type: IPMI_SYSTEM_INTERFACE_ADDR_TYPE,
        channel: IPMI_BMC_CHANNEL,
        lun: 0,
    };
    let mut data = data.to_vec();
    let mut req = IpmiReq {
        addr: (&mut addr as *mut SystemInterfaceAddr).cast(),
        addr_len: std::mem::size_of::<SystemInterfaceAddr>() as libc::c_uint,
        msgid: 1,
        msg: IpmiMsg {
            netfn,
            cmd,
            data_len: data.len() as libc::c_ushort,
            data: data.as_mut_ptr(),
        },
    };
    let fd = dev.as_raw_fd();
    // SAFETY: `req` and what it points to live across the call; the layout
    // is the kernel's (checked against <linux/ipmi.h> for x86_64).
    if unsafe { libc::ioctl(fd, IPMICTL_SEND_COMMAND as _, &mut req) } < 0 {
        return Err(format!("send: {}", std::io::Error::last_os_error()));
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, 3000) } <= 0 {
        return Err("no answer within 3 s".into());
    }
    let mut out = vec![0u8; 272];
    let mut raddr = IpmiAddr {
        addr_type: 0,
        channel: 0,
        data: [0; 32],
    };
    let mut recv = IpmiRecv {
        recv_type: 0,
        addr: (&mut raddr as *mut IpmiAddr).cast(),
        addr_len: std::mem::size_of::<IpmiAddr>() as libc::c_uint,
        msgid: 0,
        msg: IpmiMsg {
            netfn: 0,
            cmd: 0,
            data_len: out.len() as libc::c_ushort,
            data: out.as_mut_ptr(),
        },
    };
    // SAFETY: as above; the kernel writes at most `data_len` bytes.
    if unsafe { libc::ioctl(fd, IPMICTL_RECEIVE_MSG_TRUNC as _, &mut recv) } < 0 {
        return Err(format!("receive: {}", std::io::Error::last_os_error()));
    }
    out.truncate(recv.msg.data_len as usize);
    Ok(out)
}

/// Get LAN Configuration Parameters (netfn 0x0C, cmd 0x02) of `channel`:
/// the parameter's data, without the revision byte.
fn lan_parameter(dev: &std::fs::File, channel: u8, param: u8) -> Option<Vec<u8>> {
    let r = request(dev, 0x0c, 0x02, &[channel, param, 0, 0]).ok()?;
    // completion code, parameter revision, data
    (r.len() > 2 && r[0] == 0).then(|| r[2..].to_vec())
}

/// The BMC's LAN address and MAC, read in-band; `None` without an IPMI
/// interface (after loading the drivers) or a LAN channel that answers.
pub fn read(load: &mut dyn FnMut(&str) -> bool) -> Option<Bmc> {
    // ipmi_si finds no interface on most VMs: then nothing more is tried.
    if !load("ipmi_si") || !load("ipmi_devintf") {
        return None;
    }
    let path = Path::new("/dev/ipmi0");
    let deadline = Instant::now() + Duration::from_secs(1);
    while !path.exists() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .ok()?;
    for channel in 1..=2u8 {
        let Some(ip) = lan_parameter(&dev, channel, 3).filter(|d| d.len() >= 4) else {
            continue;
        };
        let mac = lan_parameter(&dev, channel, 5).filter(|d| d.len() >= 6);
        return Some(Bmc {
            channel,
            ip: format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3]),
            mac: mac
                .map(|m| {
                    m[..6]
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":")
                })
                .unwrap_or_default(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ioctl_numbers_are_the_kernels() {
        // <linux/ipmi.h> on x86_64: struct ipmi_req is 40 bytes, struct
        // ipmi_recv 48.
        assert_eq!(IPMICTL_SEND_COMMAND, 0x8028_690d);
        assert_eq!(IPMICTL_RECEIVE_MSG_TRUNC, 0xc030_690b);
    }
}
