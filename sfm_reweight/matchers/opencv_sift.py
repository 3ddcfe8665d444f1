"""OpenCV SIFT on the gray image, nearest neighbours with Lowe's ratio test and a mutual check;
score = 1 - ratio. OpenCV puts integer keypoint values at pixel centres, as we do."""

import cv2
import numpy as np

from .base import PairMatcher, gray, no_matches


class OpenCVSift(PairMatcher):
    default_conf = {"ratio": 0.8, "max_keypoints": 8000}

    def __init__(self, conf, resize_max=None, device=None):
        super().__init__(conf, resize_max, device)
        self.info = {"ratio": float(self.conf["ratio"]), "max_keypoints": int(self.conf["max_keypoints"])}
        self.description = (
            f"OpenCV SIFT ({self.info['max_keypoints']} keypoints), ratio {self.info['ratio']} + mutual check"
        )

    def match(self, image0, image1):
        sift = cv2.SIFT_create(nfeatures=self.info["max_keypoints"])
        feats = []
        for image in (image0, image1):
            u8 = np.clip(np.round(gray(image) * 255.0), 0, 255).astype(np.uint8)
            kps, desc = sift.detectAndCompute(u8, None)
            feats.append((np.float32([k.pt for k in kps]).reshape(-1, 2), desc))
        (k0, d0), (k1, d1) = feats
        if d0 is None or d1 is None or len(d0) < 2 or len(d1) < 2:
            return no_matches()
        matcher = cv2.BFMatcher(cv2.NORM_L2)
        knn01 = matcher.knnMatch(d0, d1, k=2)
        nn10 = np.array([m[0].trainIdx for m in matcher.knnMatch(d1, d0, k=1)])
        i0, i1, ratios = [], [], []
        for m in knn01:
            if len(m) < 2:
                continue
            best, second = m
            ratio = best.distance / max(second.distance, 1e-12)
            if ratio < self.info["ratio"] and nn10[best.trainIdx] == best.queryIdx:
                i0.append(best.queryIdx)
                i1.append(best.trainIdx)
                ratios.append(ratio)
        if not i0:
            return no_matches()
        return k0[i0], k1[i1], 1.0 - np.float32(ratios)
