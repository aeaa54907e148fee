"""Video analysis for city cameras: crowd gathering, fire and smoke, garbage
left behind (人群聚集、火情火灾、垃圾污染). Plain classes, testable without Ray;
``workers.video.actor`` runs them per camera on Ray."""
