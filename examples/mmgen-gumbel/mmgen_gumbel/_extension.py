"""The compiled extension ``mmgen_gumbel._C`` (operators in ``torch.ops.mmgen_gumbel``)."""
from mmgen.kernels import NativeLibrary, native_required

library = NativeLibrary("mmgen_gumbel._C", project="mmgen-gumbel",
                        rebuild_hint="`pip install --no-build-isolation -e examples/mmgen-gumbel` "
                                     "or `mmgen kernels build examples/mmgen-gumbel`")
if native_required():
    library.require_native("MMGEN_REQUIRE_NATIVE=1")
