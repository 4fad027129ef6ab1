#include "storage/lazylib/lazylib.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace moat::lazylib {

namespace {

void load(Library& lib) {
  std::call_once(lib.once, [&lib] {
    lib.handle = dlopen(lib.soname, RTLD_NOW | RTLD_LOCAL);
    if (!lib.handle) {
      const char* e = dlerror();
      lib.error = e ? e : "unknown error";
    }
  });
}

[[noreturn]] void die(const Library& lib, const std::string& what) {
  std::fprintf(stderr,
               "moat: error: %s needs %s, which cannot be loaded: %s\n"
               "moat: hint: install the %s package (apt-get install %s)\n",
               lib.needed_for, lib.soname, what.c_str(), lib.package, lib.package);
  std::fflush(stderr);
  _exit(2);  // the scan itself failed (exit codes: README); other threads may be running
}

}  // namespace

void* symbol(Library& lib, const char* name) {
  load(lib);
  if (!lib.handle) die(lib, lib.error);
  dlerror();
  void* p = dlsym(lib.handle, name);
  if (!p) {
    const char* e = dlerror();
    die(lib, std::string(name) + ": " + (e ? e : "symbol not found"));
  }
  return p;
}

}  // namespace moat::lazylib
