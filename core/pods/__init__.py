"""What a pod's spec means on a node, shared by the node agent and volume-source plugins
(public): downward API field paths (:mod:`.fieldpath`), container resources and node
allocatable (:mod:`.resources`), a pod's ConfigMaps and Secrets (:mod:`.objects`),
container environments (:mod:`.env`) and the default not-ready/unreachable tolerations
(:mod:`.tolerations`)."""
