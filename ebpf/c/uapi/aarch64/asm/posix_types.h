/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/* arm64's UAPI <asm/posix_types.h> (arch/arm64/include/uapi/asm/posix_types.h). */
#ifndef __ASM_POSIX_TYPES_H
#define __ASM_POSIX_TYPES_H

typedef unsigned short __kernel_old_uid_t;
typedef unsigned short __kernel_old_gid_t;
#define __kernel_old_uid_t __kernel_old_uid_t

#include <asm-generic/posix_types.h>

#endif
