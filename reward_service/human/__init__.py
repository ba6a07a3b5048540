"""The human rating queue: its store, how ratings become rewards, the raters' HTTP API,
the labeling page and the export that feeds `train-rm`. The backend that puts items
into the queue is `reward_service.backends.human`."""
