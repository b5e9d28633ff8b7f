// <immintrin.h> for the SIMD translation units of kernel/core/hash only (never included by
// general-register code). It is header-only; defining _MM_MALLOC_H_INCLUDED keeps GCC's
// <mm_malloc.h> (and with it <stdlib.h>) out of the freestanding build.
#pragma once

#ifndef _MM_MALLOC_H_INCLUDED
#define _MM_MALLOC_H_INCLUDED
#endif
#include <immintrin.h>

#define CAPMEM_UNROLL _Pragma("GCC unroll 64")
