import os


def metrics(baseline, sample):
    yield {
        "baseline_rows": len(baseline),
        "sample_rows": len(sample),
        "baseline_x_sum": float(baseline["x"].sum()),
        "sample_columns": list(sample.columns),
        "type": type(baseline).__name__,
    }


def metrics_none():
    return {"called": True}


def metrics_raises(df):
    return 1 / 0


def train(df):
    os.makedirs("outputDir", exist_ok=True)
    df.to_csv("outputDir/data.csv", index=False)
    return {"rows": len(df), "cwd": os.getcwd()}


def column(df):
    return df["x"].to_numpy() * 10


def routed_column(df):
    return (3, df["x"] * 10)


def two_columns(df):
    yield df["x"].to_numpy() * 10
    yield (2, df["x"].to_numpy() + 1)


def column_of_wrong_length(df):
    return df["x"].to_numpy()[:1]


def typed_frame(df):
    # One column of each kind a model's answer frame holds; the rows keep the input's index.
    import pandas as pd

    return df.assign(
        i=df["x"] * 2,
        f=df["x"] / 2,
        b=df["x"] > 1,
        s=["a", None, "c"],
        n=pd.array([1, None, 3], dtype="Int64"),
        t=pd.to_datetime(["2024-01-02", None, "2024-01-04"]),
        c=pd.Categorical(["u", "v", "u"]),
    ).iloc[::-1]


def dtypes(df):
    # What the frame was built of: numbers come as bytes, read in place.
    return {c: str(df[c].dtype) for c in ("x", "y")}


def routed_frame(df):
    return (3, df.assign(y=df["x"] * 2))


def bad_cell(df):
    # A cell no record value can hold fails the record of its row only.
    return df.assign(o=[object(), 1, 2])


def same_label_twice(df):
    out = df[["x", "x"]]
    out.columns = ["a", "a"]
    return out


def unreadable_label(df):
    # A column label no record value can hold: every record of the batch fails.
    return df.assign(**{"y": df["x"]}).rename(columns={"y": object()})


def negative_slot(df):
    return (-3, df)
