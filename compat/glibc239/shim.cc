// Definitions of the few glibc 2.38 / GCC 13 symbols that the manylinux_2_39
// wheels of ml-metadata and tensorflow-data-validation 1.21 reference, for
// systems (Debian 12: glibc 2.36, GCC 12) that lack them. Each is given the
// exact symbol version the wheels ask for (see shim.map).
#include <cstdlib>
#include <exception>
#include <ios>

extern "C" {

// C23 strto* differ from the classic ones only in also accepting "0b"
// prefixes for base 0/2; the wheels parse decimal numbers.
long __isoc23_strtol(const char* s, char** end, int base) {
  return std::strtol(s, end, base);
}
long long __isoc23_strtoll(const char* s, char** end, int base) {
  return std::strtoll(s, end, base);
}
unsigned long __isoc23_strtoul(const char* s, char** end, int base) {
  return std::strtoul(s, end, base);
}
unsigned long long __isoc23_strtoull(const char* s, char** end, int base) {
  return std::strtoull(s, end, base);
}

// GCC 13 calls this when an exception escapes a noexcept function.
void __cxa_call_terminate(void*) noexcept { std::terminate(); }

// GCC 13 emits a call to std::ios_base_library_init() (mangled below) from
// every object that includes <iostream>, instead of a static Init object.
void _ZSt21ios_base_library_initv() {
  static std::ios_base::Init init;
}

}  // extern "C"
