// Force-included into the engine for the release wheel only (CMakeLists.txt, I2Z_WHEEL).
// GCC 12's libstdc++ exports std::condition_variable::wait(unique_lock<mutex>&) under a new
// version, GLIBCXX_3.4.30, beside the GLIBCXX_3.4.11 one every libstdc++ since GCC 4.4 has. That
// single symbol would raise the wheel from manylinux_2_34 (RHEL 9's GCC 11 libstdc++) to _2_35,
// so the engine binds to the older one (make test-wheel runs the threaded conversion with it).
#pragma once
#include <version>  // defines __GLIBCXX__
#if defined(__GLIBCXX__) && defined(__x86_64__)
__asm__(".symver _ZNSt18condition_variable4waitERSt11unique_lockISt5mutexE,"
        "_ZNSt18condition_variable4waitERSt11unique_lockISt5mutexE@GLIBCXX_3.4.11");
#endif
