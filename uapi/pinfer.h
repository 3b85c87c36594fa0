/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * pinfer: the contract between pinfer.ko (/dev/pinfer) and user space.
 *
 * Rules for growing it: structs have fixed sizes and explicit padding;
 * reserved fields must be zero and unknown flags are refused (-EINVAL), so a
 * later version can give them a meaning; capabilities are discovered through
 * PINFER_IOC_VERSION's feature bits, never assumed from the version number.
 *
 * On /dev/pinfer:
 *   PINFER_IOC_VERSION        what the module speaks
 *   PINFER_IOC_REGION_CREATE  pinned hugepage memory -> a new region fd
 * On a region fd:
 *   mmap(MAP_SHARED)          the region, with 2 MiB page-table entries
 *   PINFER_IOC_REGION_INFO    size, node, page size, bytes loaded, in flight
 *   PINFER_IOC_BIND_FILE      the file that prefetches read from
 *   PINFER_IOC_PREFETCH       read file -> region, synchronously
 *   IORING_OP_URING_CMD       the same, asynchronously (SQE128, cmd_op =
 *                             PINFER_URING_CMD_PREFETCH, struct
 *                             pinfer_prefetch in the SQE's command area)
 */
#ifndef _UAPI_LINUX_PINFER_H
#define _UAPI_LINUX_PINFER_H

#include <linux/const.h>
#include <linux/ioctl.h>
#include <linux/types.h>

#define PINFER_DEVICE_NAME	"pinfer"
#define PINFER_ABI_VERSION	1

#define PINFER_IOC_MAGIC	0xb7

/* Feature bits of struct pinfer_version.features */
#define PINFER_FEAT_REGION	_BITULL(0)	/* REGION_CREATE, INFO, mmap */
#define PINFER_FEAT_PAGE_2M	_BITULL(1)	/* 2 MiB pages */
#define PINFER_FEAT_PAGE_1G	_BITULL(2)	/* 1 GiB pages */
#define PINFER_FEAT_PREFETCH	_BITULL(3)	/* BIND_FILE, PREFETCH ioctl */
#define PINFER_FEAT_URING_CMD	_BITULL(4)	/* prefetch through io_uring */

/* Page sizes, in bytes, for pinfer_region_create.page_size */
#define PINFER_PAGE_2M		_BITUL(21)
#define PINFER_PAGE_1G		_BITUL(30)

/* Largest length of one prefetch command. */
#define PINFER_PREFETCH_MAX	_BITULL(30)

/* PINFER_IOC_VERSION: what this module speaks. */
struct pinfer_version {
	__u32 abi_version;	/* out: PINFER_ABI_VERSION of the module */
	__u32 reserved;		/* in: 0 */
	__u64 features;		/* out: PINFER_FEAT_* bits */
};

/*
 * PINFER_IOC_REGION_CREATE, on /dev/pinfer open for writing: @size bytes (a
 * multiple of @page_size) of pinned, zeroed memory on NUMA node @numa_node
 * (-1: the caller's node), charged to the caller's user within its
 * RLIMIT_MEMLOCK (unless CAP_IPC_LOCK), memory cgroup and the module's cap
 * until the last page is freed. Returns the new region fd (close-on-exec),
 * also stored in @fd. Errors: EINVAL (bad field), EOPNOTSUPP (a page size
 * the module cannot give), EBADF (device open read-only), ENOMEM (a limit,
 * or no memory on the node). Mappings of a region are never executable.
 */
struct pinfer_region_create {
	__u64 size;		/* in */
	__s32 numa_node;	/* in: node, or -1 */
	__u32 page_size;	/* in: PINFER_PAGE_2M */
	__u32 flags;		/* in: 0 */
	__s32 fd;		/* out: the region fd */
	__u64 reserved[2];	/* in: 0 */
};

/* PINFER_IOC_REGION_INFO, on a region fd. */
struct pinfer_region_info {
	__u64 size;		/* bytes */
	__s32 numa_node;	/* node the pages are on */
	__u32 page_size;	/* PINFER_PAGE_2M */
	__u64 bytes_loaded;	/* bytes read into the region by prefetches */
	__u32 inflight;		/* prefetch commands not yet completed */
	__u32 reserved0;
	__u64 reserved[2];
};

/*
 * PINFER_IOC_BIND_FILE, on a region fd: @fd, a regular file opened for
 * reading, becomes the source of later prefetches (the region keeps a
 * reference; binding again replaces it). While bound, the file's writes are
 * denied (ETXTBSY to opening it for writing or truncating it). EBADF: not an
 * open fd, or not open for reading. EINVAL: not a regular file, or
 * flags/reserved set. ETXTBSY: the file is open for writing.
 */
struct pinfer_bind_file {
	__s32 fd;
	__u32 flags;		/* 0 */
	__u64 reserved;		/* 0 */
};

/*
 * A prefetch: read @len bytes at @file_off of the bound file into the region
 * at @region_off. With @file_off and @region_off multiples of 4096 and a file
 * system that supports it, the whole 4 KiB blocks are read with direct I/O
 * into the region's pages and the rest through the page cache; otherwise
 * all of it goes through the page cache. The result is the number of bytes
 * read (less than @len only at the end of the file), and no byte of the
 * region past them changes; or -errno: EINVAL (bad range or fields), EBADF
 * (no file bound), EBUSY (too many commands in flight on the region), or the
 * file system's error.
 */
struct pinfer_prefetch {
	__u64 region_off;
	__u64 file_off;
	__u64 len;		/* 1 .. PINFER_PREFETCH_MAX */
	__u32 flags;		/* 0 */
	__u32 reserved;		/* 0 */
};

#define PINFER_IOC_VERSION	 _IOWR(PINFER_IOC_MAGIC, 0x00, struct pinfer_version)
#define PINFER_IOC_REGION_CREATE _IOWR(PINFER_IOC_MAGIC, 0x01, struct pinfer_region_create)
#define PINFER_IOC_REGION_INFO	 _IOR(PINFER_IOC_MAGIC, 0x02, struct pinfer_region_info)
#define PINFER_IOC_BIND_FILE	 _IOW(PINFER_IOC_MAGIC, 0x03, struct pinfer_bind_file)
#define PINFER_IOC_PREFETCH	 _IOW(PINFER_IOC_MAGIC, 0x04, struct pinfer_prefetch)

/* io_uring passthrough: sqe->cmd_op of IORING_OP_URING_CMD on a region fd */
#define PINFER_URING_CMD_PREFETCH _IOW(PINFER_IOC_MAGIC, 0x40, struct pinfer_prefetch)

#endif /* _UAPI_LINUX_PINFER_H */
