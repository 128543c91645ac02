"""Knowledge distillation during fine-tunes: a teacher's head outputs guide the student's training.

* :mod:`.outputs`: the class logits and box distributions of any head, any series.
* :mod:`.losses`: the distillation losses on them.
* :mod:`.teacher`: loading the teacher, running it with frozen statistics, checking it fits the student.
* :mod:`.criterion`: the wrapper that adds the term to the student's criterion (``kd_loss``).
* :mod:`.training`: when a run distills, and attaching it to a trainer.
"""
