/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/* arm64's UAPI <asm/bitsperlong.h> (arch/arm64/include/uapi/asm/bitsperlong.h), for reading
 * asm-generic/unistd.h (arm64's syscall table) without linux-libc-dev:arm64. */
#ifndef __ASM_BITSPERLONG_H
#define __ASM_BITSPERLONG_H

#define __BITS_PER_LONG 64

#include <asm-generic/bitsperlong.h>

#endif
