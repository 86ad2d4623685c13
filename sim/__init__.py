"""Systems under evaluation and the users who talk with them, shared by ``eval`` and ``rl`` (below both).

* :mod:`sim.systems` — a system predicts on a test turn (:class:`~sim.systems.Prediction`): the graph
  and its ablations, one expert alone, the LLM alone.
* :mod:`sim.users` — simulated users who want a target and answer from its attributes.
* :mod:`sim.dialogues` — one simulated dialogue (:class:`~sim.dialogues.Episode`) and the turns it starts from.
"""
