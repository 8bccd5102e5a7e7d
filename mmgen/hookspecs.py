"""Hook specifications of mmgen's plugin system (pluggy project ``mmgen``).

A plugin is a module or object with functions marked ``@mmgen.hookimpl``; installed plugins are
found through the ``mmgen`` entry-point group::

    [project.entry-points.mmgen]
    ultrasound = "acme_ultrasound"
"""
import pluggy

PROJECT = "mmgen"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def mmgen_register(registry):
    """Add the plugin's components to ``registry``.

    Call ``registry.add(kind, name, obj, **meta)`` once per component, where ``kind`` is one of
    encoder, decoder, generator, discriminator, denoiser, text_encoder, dataset, metric, model; ``name`` is
    namespaced by modality, e.g. ``"image.conv"``; ``obj`` is a class or factory that
    ``mmgen.build(kind, name, **kwargs)`` calls with the user's keyword arguments; ``meta`` holds
    free-form descriptive fields (a ``description`` string is shown by ``mmgen plugins list``).
    """
