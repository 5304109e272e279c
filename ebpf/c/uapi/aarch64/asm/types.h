/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/* arm64's UAPI <asm/types.h> is the generic one (generic-y in arch/arm64/include/uapi/asm): a
 * copy here, so that the aarch64 objects build without linux-libc-dev:arm64. */
#include <asm-generic/types.h>
