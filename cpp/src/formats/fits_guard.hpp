// A walk over the headers of a FITS file before cfitsio parses them.
//
// cfitsio 4.2 copies the NAXISn values of an image HDU into FITSfile::imgnaxis[99] without a
// bound (ffpinit; only its writer checks "NAXIS value is too large (>99)"). A header declaring
// 100 <= NAXIS <= 999 overwrites the rest of the FITSfile struct on the heap and, from
// NAXIS = 104, crashes the process (found by fuzz_fits; tests/test_hostile.py). cfitsio parses
// every HDU header on its way to the one asked for (and all of them to count HDUs), so every
// header is checked here, also for the other header values that kill the process inside
// cfitsio 4.2 (all found by fuzz_fits):
//   * in a tile-compressed HDU, a ZTILEn that is not a positive integer, or a RICE BLOCKSIZE of
//     0: cfitsio divides by them (SIGFPE);
//   * BLANK, or ZBITPIX, ZNAXIS, ZNAXISn, ZTILEn, ZVALn, ZBLANK, ZDITHER0 of a tile-compressed
//     HDU, holding an unconvertible value longer than 28 characters (a complex "(..." value
//     runs to the first ')', also one in the comment): ffc2j's error message overflows its
//     81-byte buffer (glibc's fortify check aborts);
//   * a table's TTYPEn (TUNITn, TFORMn, ...) given as bare text filling the value field:
//     ffgtbp strcpy()s it into a 70-byte field (fortify abort).
#pragma once
#include <cstdint>

namespace i2z {

// Reads the HDU headers of the FITS file open as `fd` (`size` bytes), skipping the data units,
// and throws i2z::Error(ErrorKind::Value) naming the HDU when one holds any of the above.
// Stops quietly at whatever it cannot follow (a missing END, a data size beyond the file):
// cfitsio reports those itself.
void check_fits_headers(int fd, std::uint64_t size);

}  // namespace i2z
