//! A disk's serial number straight from the device: SCSI INQUIRY of the
//! Unit Serial Number VPD page (0x80) through SG_IO, for disks whose
//! driver does not show it in sysfs (LSI MegaRAID SAS under QEMU, some
//! RAID controllers).

use std::os::fd::AsRawFd;
use std::path::Path;

const SG_IO: libc::c_ulong = 0x2285;
const SG_DXFER_FROM_DEV: libc::c_int = -3;

/// `struct sg_io_hdr` of <scsi/sg.h>.
#[repr(C)]
struct SgIoHdr {
    interface_id: libc::c_int,
    dxfer_direction: libc::c_int,
    cmd_len: libc::c_uchar,
    mx_sb_len: libc::c_uchar,
    iovec_count: libc::c_ushort,
    dxfer_len: libc::c_uint,
    dxferp: *mut libc::c_void,
    cmdp: *mut libc::c_uchar,
    sbp: *mut libc::c_uchar,
    timeout: libc::c_uint,
    flags: libc::c_uint,
    pack_id: libc::c_int,
    usr_ptr: *mut libc::c_void,
    status: libc::c_uchar,
    masked_status: libc::c_uchar,
    msg_status: libc::c_uchar,
    sb_len_wr: libc::c_uchar,
    host_status: libc::c_ushort,
    driver_status: libc::c_ushort,
    resid: libc::c_int,
    duration: libc::c_uint,
    info: libc::c_uint,
}

/// The serial from a VPD page 0x80 answer (header: qualifier/type, page
/// code, length), printable characters only.
pub fn parse_vpd80(b: &[u8]) -> Option<String> {
    if b.len() < 4 || b[1] != 0x80 {
        return None;
    }
    let len = (usize::from(b[2]) << 8 | usize::from(b[3])).min(b.len() - 4);
    let s: String = b[4..4 + len]
        .iter()
        .filter(|c| c.is_ascii_graphic() || **c == b' ')
        .map(|&c| c as char)
        .collect();
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

/// INQUIRY EVPD 0x80 on the block device `dev`.
pub fn inquiry_serial(dev: &Path) -> Option<String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(dev)
        .ok()?;
    let mut cdb: [u8; 6] = [0x12, 0x01, 0x80, 0x00, 0xff, 0x00];
    let mut data = [0u8; 255];
    let mut sense = [0u8; 32];
    let mut hdr = SgIoHdr {
        interface_id: b'S' as libc::c_int,
        dxfer_direction: SG_DXFER_FROM_DEV,
        cmd_len: cdb.len() as u8,
        mx_sb_len: sense.len() as u8,
        iovec_count: 0,
        dxfer_len: data.len() as u32,
        dxferp: data.as_mut_ptr().cast(),
        cmdp: cdb.as_mut_ptr(),
        sbp: sense.as_mut_ptr(),
        timeout: 5000,
        flags: 0,
        pack_id: 0,
        usr_ptr: std::ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    };
    // SAFETY: SG_IO reads `hdr` and the buffers it points to, all of which
    // live on this stack frame for the duration of the call.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), SG_IO as _, &mut hdr as *mut SgIoHdr) };
    if r != 0 || hdr.status != 0 || hdr.host_status != 0 {
        return None;
    }
    let got = data.len().saturating_sub(hdr.resid.max(0) as usize);
    parse_vpd80(&data[..got])
}

use std::os::unix::fs::OpenOptionsExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vpd_page_gives_its_serial() {
        assert_eq!(
            parse_vpd80(b"\x00\x80\x00\x0a  SN-0042 ").as_deref(),
            Some("SN-0042")
        );
        assert_eq!(parse_vpd80(b"\x00\x83\x00\x02ab"), None);
        assert_eq!(
            parse_vpd80(b"\x00\x80\x00\xff12"),
            Some("12".into()),
            "length past the data"
        );
        assert_eq!(parse_vpd80(b"\x00\x80"), None);
    }
}
