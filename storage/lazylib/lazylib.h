// Shared libraries that only some commands need, loaded on their first use.
//
// libcurl (registries, signature lookasides) and gpgme (OpenPGP signatures)
// bring 35 of the 53 shared objects moat would otherwise map at every start:
// the dynamic loader and the kernel spent about 4 ms on them before main()
// in every `moat scan` of an image already in the store, a scan that needs
// neither. curl.cc and gpgme.cc define the library functions moat calls
// (the headers' own declarations, so every call site is unchanged) as
// trampolines that dlopen() the library the first time one of them runs.
//
// A library that cannot be loaded ends the command with exit status 2 and a
// message naming it and the Debian package that ships it: these are hard
// dependencies of the package, so that only happens on a broken install.
#pragma once

#include <mutex>
#include <string>

namespace moat::lazylib {

struct Library {
  const char* soname;   // "libcurl.so.4"
  const char* package;  // "libcurl4": named in the error
  const char* needed_for;
  std::once_flag once;
  void* handle = nullptr;
  std::string error;  // dlerror() of the failed dlopen (it is per thread)
};

// The address of `name` in `lib`, loading the library on first use (RTLD_NOW,
// RTLD_LOCAL). Never returns null: a missing library or symbol ends the
// process (see above).
void* symbol(Library& lib, const char* name);

}  // namespace moat::lazylib
