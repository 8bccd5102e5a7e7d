"""mmgen's built-in plugin (entry point ``mmgen``): registers mmgen's own datasets as ``dataset``
components (``image.digits``, ``image.mnist``, ``text.lee``, ``multimodal.mnist-trimodal``, ...),
through the same hook and entry points as every other plugin."""
from mmgen.hookspecs import hookimpl


@hookimpl
def mmgen_register(registry):
    from mmgen.data import catalog
    for name, component in catalog.component_names().items():
        factory = catalog.DATASETS[name]
        doc = (getattr(factory, "__doc__", None) or "").strip().splitlines()
        registry.add("dataset", component, factory, modality=catalog.MODALITY[name], short_name=name,
                     description=doc[0] if doc else name)
