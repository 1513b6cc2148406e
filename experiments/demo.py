"""`make demo`: runs the end-to-end chain that exists so far and says what it did."""

from lcrnet_jax import skeleton


def main() -> None:
    print("lcrnet-jax demo")
    print("The end-to-end chain (synthetic data -> train -> evaluate -> predict) is not built yet.")
    print("What exists: joint sets and their conversions.")
    for js in skeleton.JOINT_SETS.values():
        print(f"  {js.name:9s} {js.num_joints:2d} joints: {', '.join(js.joints)}")


if __name__ == "__main__":
    main()
