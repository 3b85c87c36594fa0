// SPDX-License-Identifier: GPL-2.0
/*
 * pinfer.ko: pinned, hugepage-backed model memory for pinfer.
 *
 * This is the device skeleton: /dev/pinfer and its version ioctl. Regions,
 * mappings and io_uring prefetch are described in Documentation/pinfer.rst.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/uaccess.h>

#include <pinfer.h>

static long pinfer_ioctl_version(void __user *arg)
{
	struct pinfer_version v;

	if (copy_from_user(&v, arg, sizeof(v)))
		return -EFAULT;
	if (v.reserved)
		return -EINVAL;
	v.abi_version = PINFER_ABI_VERSION;
	v.features = 0;
	if (copy_to_user(arg, &v, sizeof(v)))
		return -EFAULT;
	return 0;
}

static long pinfer_dev_ioctl(struct file *file, unsigned int cmd,
			     unsigned long arg)
{
	switch (cmd) {
	case PINFER_IOC_VERSION:
		return pinfer_ioctl_version((void __user *)arg);
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

static struct miscdevice pinfer_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = PINFER_DEVICE_NAME,
	.fops = &pinfer_dev_fops,
	.mode = 0660,
};

static int __init pinfer_init(void)
{
	BUILD_BUG_ON(sizeof(struct pinfer_version) != 16);
	return misc_register(&pinfer_misc);
}

static void __exit pinfer_exit(void)
{
	misc_deregister(&pinfer_misc);
}

module_init(pinfer_init);
module_exit(pinfer_exit);

MODULE_DESCRIPTION("pinned hugepage model memory for pinfer");
MODULE_LICENSE("GPL");
