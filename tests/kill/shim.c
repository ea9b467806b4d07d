// LD_PRELOAD shim for tests/test_kill_syscalls.py: counts the rename/unlink/write/close calls on
// paths (or descriptors of files) under a folder and, at the k-th, SIGKILLs the process (or makes
// the call fail with EIO). Armed per forked child through i2z_shim_arm(); disarmed it only counts.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

enum { OP_RENAME = 1, OP_UNLINK = 2, OP_WRITE = 4, OP_CLOSE = 8 };

static atomic_long counter;
static long kill_at;  // 0 = count only
static int fail_instead, ops;
static char prefix[PATH_MAX];
static size_t prefix_len;

void i2z_shim_arm(long k, int fail, int op_mask, const char* folder) {
  kill_at = k;
  fail_instead = fail;
  ops = op_mask;
  snprintf(prefix, sizeof prefix, "%s", folder);
  prefix_len = strlen(prefix);
  atomic_store(&counter, 0);
}

long i2z_shim_count(void) { return atomic_load(&counter); }

static int under(const char* path) {
  return prefix_len && path && strncmp(path, prefix, prefix_len) == 0;
}

static int fd_under(int fd) {
  if (!prefix_len || fd < 0) return 0;
  char link[64], target[PATH_MAX];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  const ssize_t n = readlink(link, target, sizeof target - 1);
  if (n <= 0) return 0;
  target[n] = 0;
  return under(target);
}

// True when this call must fail; does not return when it must kill.
static int hit(int op) {
  if (!(ops & op)) return 0;
  const long c = atomic_fetch_add(&counter, 1) + 1;
  if (kill_at > 0 && c == kill_at) {
    if (fail_instead) {
      errno = EIO;
      return 1;
    }
    raise(SIGKILL);
  }
  return 0;
}

#define REAL(name) \
  static __typeof__(name)* real = NULL; \
  if (!real) real = (__typeof__(name)*)dlsym(RTLD_NEXT, #name)

int rename(const char* a, const char* b) {
  REAL(rename);
  if (under(a) && hit(OP_RENAME)) return -1;
  return real(a, b);
}

int renameat(int fa, const char* a, int fb, const char* b) {
  REAL(renameat);
  if (under(a) && hit(OP_RENAME)) return -1;
  return real(fa, a, fb, b);
}

int renameat2(int fa, const char* a, int fb, const char* b, unsigned flags) {
  REAL(renameat2);
  if (under(a) && hit(OP_RENAME)) return -1;
  return real(fa, a, fb, b, flags);
}

int unlink(const char* p) {
  REAL(unlink);
  if (under(p) && hit(OP_UNLINK)) return -1;
  return real(p);
}

int unlinkat(int fd, const char* p, int flags) {
  REAL(unlinkat);
  // Relative names (shutil.rmtree's dir_fd walk) count when the folder is ours.
  if ((under(p) || (p[0] != '/' && fd_under(fd))) && hit(OP_UNLINK)) return -1;
  return real(fd, p, flags);
}

int remove(const char* p) {
  REAL(remove);
  if (under(p) && hit(OP_UNLINK)) return -1;
  return real(p);
}

int rmdir(const char* p) {
  REAL(rmdir);
  if (under(p) && hit(OP_UNLINK)) return -1;
  return real(p);
}

ssize_t write(int fd, const void* buf, size_t n) {
  REAL(write);
  if (fd_under(fd) && hit(OP_WRITE)) return -1;
  return real(fd, buf, n);
}

int close(int fd) {
  REAL(close);
  if (fd_under(fd) && hit(OP_CLOSE)) {
    real(fd);
    return -1;
  }
  return real(fd);
}
