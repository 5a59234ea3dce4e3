#include "services/common/byte_size.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace taskgrid {

absl::StatusOr<int64_t> ParseByteSize(absl::string_view value) {
  absl::string_view digits = value;
  int64_t unit = 1;
  if (!digits.empty()) {
    switch (absl::ascii_tolower(digits.back())) {
      case 'k':
        unit = int64_t{1} << 10;
        break;
      case 'm':
        unit = int64_t{1} << 20;
        break;
      case 'g':
        unit = int64_t{1} << 30;
        break;
      default:
        break;
    }
    if (unit != 1) digits.remove_suffix(1);
  }
  int64_t n;
  if (!absl::SimpleAtoi(digits, &n) || n < 0 || n > (int64_t{1} << 50) / unit) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", value, "\" is not a size (e.g. 64m, 1g, 1048576)"));
  }
  return n * unit;
}

}  // namespace taskgrid
