// The ring-3 test programs of ktest_ring3_progs.S (and the demo guest of demo_ring3.S):
// position-independent code copied into a guest code page by the test that runs it. Each
// program is the bytes [name, name_end); what each does is written next to it in the .S.
#pragma once

// NOLINTBEGIN(bugprone-dynamic-static-initializers): clang-tidy 14 false positive on
// extern declarations; these are labels in the .S files, never initialized at run time.
extern "C" {
extern const char ring3_prog_exit[], ring3_prog_exit_end[], ring3_prog_exit_ud2[];
extern const char ring3_prog_load[], ring3_prog_load_end[];
extern const char ring3_prog_store[], ring3_prog_store_end[];
extern const char ring3_prog_jump[], ring3_prog_jump_end[];
extern const char ring3_prog_fill[], ring3_prog_fill_end[];
extern const char ring3_prog_ud[], ring3_prog_ud_end[];
extern const char ring3_demo_prog[], ring3_demo_prog_end[];
extern const char ring3_prog_reader[], ring3_prog_reader_end[];  // ktest_smp_progs.S
}
// NOLINTEND(bugprone-dynamic-static-initializers)
