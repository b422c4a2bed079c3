import json, os
with open(os.path.join(os.environ["FTLAB_RUN_DIR"], "written-by-trainer.txt"), "w") as f:
    f.write("ok\n")
print(json.dumps({"split": "test", "metric": "exact_match", "value": 1.0}))
