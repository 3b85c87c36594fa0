// SPDX-License-Identifier: GPL-2.0
/*
 * pinfer.ko: pinned, hugepage-backed, NUMA-local model memory for pinfer.
 *
 * /dev/pinfer hands out regions (region.c) that user space maps and fills
 * from a file with direct I/O driven through io_uring (prefetch.c).
 * Documentation/pinfer.rst describes the interface.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/device.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/uaccess.h>

#include "internal.h"

atomic64_t pinfer_pinned_bytes = ATOMIC64_INIT(0);
atomic64_t pinfer_node_pinned_bytes[MAX_NUMNODES];
atomic64_t pinfer_held_bytes = ATOMIC64_INIT(0);
atomic_t pinfer_nr_regions = ATOMIC_INIT(0);
atomic_t pinfer_prefetch_inflight = ATOMIC_INIT(0);
atomic64_t pinfer_prefetch_commands = ATOMIC64_INIT(0);
atomic64_t pinfer_prefetch_errors = ATOMIC64_INIT(0);
atomic64_t pinfer_prefetch_bytes = ATOMIC64_INIT(0);

static unsigned long max_pinned_mb;

/* A cap in MiB whose byte count does not fit in 64 bits is refused. */
static int max_pinned_mb_set(const char *val, const struct kernel_param *kp)
{
	unsigned long mb;
	int ret = kstrtoul(val, 0, &mb);

	if (ret)
		return ret;
	if ((u64)mb > U64_MAX >> 20)
		return -ERANGE;
	WRITE_ONCE(max_pinned_mb, mb);
	return 0;
}

static const struct kernel_param_ops max_pinned_mb_ops = {
	.set = max_pinned_mb_set,
	.get = param_get_ulong,
};
module_param_cb(max_pinned_mb, &max_pinned_mb_ops, &max_pinned_mb, 0644);
MODULE_PARM_DESC(max_pinned_mb,
		 "Most memory all regions together may pin, in MiB (0: 3/4 of RAM)");

u64 pinfer_max_pinned_bytes(void)
{
	unsigned long mb = READ_ONCE(max_pinned_mb);

	if (mb)
		return (u64)mb << 20;
	return (u64)totalram_pages() / 4 * 3 << PAGE_SHIFT;
}

static long pinfer_ioctl_version(struct pinfer_version __user *uarg)
{
	struct pinfer_version v;

	if (copy_from_user(&v, uarg, sizeof(v)))
		return -EFAULT;
	if (v.reserved)
		return -EINVAL;
	v.abi_version = PINFER_ABI_VERSION;
	v.features = PINFER_FEAT_REGION | PINFER_FEAT_PAGE_2M |
		     PINFER_FEAT_PREFETCH | PINFER_FEAT_URING_CMD;
	return copy_to_user(uarg, &v, sizeof(v)) ? -EFAULT : 0;
}

static long pinfer_dev_ioctl(struct file *file, unsigned int cmd,
			     unsigned long arg)
{
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case PINFER_IOC_VERSION:
		return pinfer_ioctl_version(uarg);
	case PINFER_IOC_REGION_CREATE:
		/* pinning memory takes the device open for writing */
		if (!(file->f_mode & FMODE_WRITE))
			return -EBADF;
		return pinfer_region_create(uarg);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations pinfer_dev_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = pinfer_dev_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

/*
 * /sys/class/misc/pinfer/: what the module holds and has read, one value per
 * file (node_pinned_bytes: one per node with memory), for pinfer stat and
 * pinfer doctor (Documentation/pinfer.rst).
 */
#define PINFER_ATTR_ATOMIC64(name, var)					\
static ssize_t name##_show(struct device *dev,				\
			   struct device_attribute *attr, char *buf)	\
{									\
	return sysfs_emit(buf, "%lld\n", (long long)atomic64_read(&(var))); \
}									\
static DEVICE_ATTR_RO(name)

PINFER_ATTR_ATOMIC64(pinned_bytes, pinfer_pinned_bytes);
PINFER_ATTR_ATOMIC64(held_bytes, pinfer_held_bytes);
PINFER_ATTR_ATOMIC64(prefetch_commands, pinfer_prefetch_commands);
PINFER_ATTR_ATOMIC64(prefetch_errors, pinfer_prefetch_errors);
PINFER_ATTR_ATOMIC64(prefetch_bytes, pinfer_prefetch_bytes);

static ssize_t max_pinned_bytes_show(struct device *dev,
				     struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%llu\n", pinfer_max_pinned_bytes());
}
static DEVICE_ATTR_RO(max_pinned_bytes);

static ssize_t regions_show(struct device *dev, struct device_attribute *attr,
			    char *buf)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&pinfer_nr_regions));
}
static DEVICE_ATTR_RO(regions);

static ssize_t prefetch_inflight_show(struct device *dev,
				      struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&pinfer_prefetch_inflight));
}
static DEVICE_ATTR_RO(prefetch_inflight);

/* "N0=BYTES N1=BYTES ...": each node with memory, as numa_maps writes them */
static ssize_t node_pinned_bytes_show(struct device *dev,
				      struct device_attribute *attr, char *buf)
{
	int nid, len = 0;

	for_each_node_state(nid, N_MEMORY)
		len += sysfs_emit_at(buf, len, "%sN%d=%lld", len ? " " : "", nid,
				     (long long)atomic64_read(&pinfer_node_pinned_bytes[nid]));
	return len + sysfs_emit_at(buf, len, "\n");
}
static DEVICE_ATTR_RO(node_pinned_bytes);

static struct attribute *pinfer_attrs[] = {
	&dev_attr_pinned_bytes.attr,
	&dev_attr_held_bytes.attr,
	&dev_attr_max_pinned_bytes.attr,
	&dev_attr_regions.attr,
	&dev_attr_node_pinned_bytes.attr,
	&dev_attr_prefetch_inflight.attr,
	&dev_attr_prefetch_commands.attr,
	&dev_attr_prefetch_errors.attr,
	&dev_attr_prefetch_bytes.attr,
	NULL,
};
ATTRIBUTE_GROUPS(pinfer);

static struct miscdevice pinfer_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = PINFER_DEVICE_NAME,
	.fops = &pinfer_dev_fops,
	.groups = pinfer_groups,
	.mode = 0660,
};

static int __init pinfer_init(void)
{
	int ret;

	BUILD_BUG_ON(sizeof(struct pinfer_version) != 16);
	BUILD_BUG_ON(sizeof(struct pinfer_region_create) != 40);
	BUILD_BUG_ON(sizeof(struct pinfer_region_info) != 48);
	BUILD_BUG_ON(sizeof(struct pinfer_bind_file) != 16);
	BUILD_BUG_ON(sizeof(struct pinfer_prefetch) != 32);
	pinfer_debugfs_init();
	ret = misc_register(&pinfer_misc);
	if (ret)
		pinfer_debugfs_exit();
	return ret;
}

static void __exit pinfer_exit(void)
{
	misc_deregister(&pinfer_misc);
	pinfer_debugfs_exit();
	pinfer_region_exit();
}

module_init(pinfer_init);
module_exit(pinfer_exit);

MODULE_DESCRIPTION("pinned hugepage model memory for pinfer");
MODULE_LICENSE("GPL");
