"""The test suite's tiny variants, beside no shipped one: registered in-process by ``conftest`` and,
through ``HARMONY_VARIANTS=tests.variants`` (which ``conftest`` sets), in the commands the tests run
as subprocesses."""
from harmonizers.net import register
from syconet.model import register as register_syconet

register("issam", {"issam_test": ({"depth": 3, "ch": 8, "attend_from": 1}, 32)})
register("gct", {"gct_test": ({"hidden": 8}, 32)})
register("rainnet", {"rainnet_test": ({"ngf": 8, "inner_blocks": 1}, 32)})
register("hrnet", {"hrnet_test": ({"depth": 6, "ch": 8, "max_channels": 32, "width": 4, "small": True, "ocr": 8}, 128)})
register_syconet({"syconet_test": {"backbone": "resnet10t", "enc_size": 32, "n_luts": 6, "lut_dim": 9, "z_dim": 8}})
