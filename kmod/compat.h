/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The differences between the kernels pinfer.ko is built for (Debian 12's
 * 6.1 and 6.12) that its code runs into, in one place. The PINFER_HAVE_*
 * macros come from probing the kernel's headers (kmod/Kbuild).
 */
#ifndef PINFER_COMPAT_H
#define PINFER_COMPAT_H

#include <linux/mm.h>
#include <linux/sched/mm.h>

#ifdef PINFER_HAVE_IO_URING_SQE_CMD
#include <linux/io_uring/cmd.h>

/* The command area of the SQE (80 bytes with IORING_SETUP_SQE128). */
static inline const void *pinfer_uring_cmd_payload(struct io_uring_cmd *cmd)
{
	return io_uring_sqe_cmd(cmd->sqe);
}
#else
#include <linux/io_uring.h>

static inline const void *pinfer_uring_cmd_payload(struct io_uring_cmd *cmd)
{
	return cmd->cmd;
}
#endif

static inline unsigned long
pinfer_mm_get_unmapped_area(struct file *file, unsigned long addr,
			    unsigned long len, unsigned long pgoff,
			    unsigned long flags)
{
#ifdef PINFER_HAVE_MM_GET_UNMAPPED_AREA
	return mm_get_unmapped_area(current->mm, file, addr, len, pgoff, flags);
#else
	return current->mm->get_unmapped_area(file, addr, len, pgoff, flags);
#endif
}

/* vm_flags became const with a setter in 6.3. */
static inline void pinfer_vm_flags_set(struct vm_area_struct *vma,
				       vm_flags_t flags)
{
#ifdef PINFER_HAVE_VM_FLAGS_SET
	vm_flags_set(vma, flags);
#else
	vma->vm_flags |= flags;
#endif
}

#endif /* PINFER_COMPAT_H */
