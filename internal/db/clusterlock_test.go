package db

import (
	"context"
	"testing"
	"time"
)

// testClusterLock: two Stores on one database, as two mxos-server
// processes would have: while one transaction holds LockPublish, the
// other's LockCluster waits, and it gets the lock once the first commits.
func testClusterLock(t *testing.T, dsn string) {
	a, b := openDSN(t, dsn), openDSN(t, dsn)
	ctx := context.Background()
	held, release := make(chan struct{}), make(chan struct{})
	aDone := make(chan error, 1)
	go func() {
		aDone <- a.Tx(ctx, func(tx *Tx) error {
			if err := tx.LockCluster(ctx, LockPublish); err != nil {
				return err
			}
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	acquired := make(chan time.Time, 1)
	bDone := make(chan error, 1)
	go func() {
		bDone <- b.Tx(ctx, func(tx *Tx) error {
			if err := tx.LockCluster(ctx, LockPublish); err != nil {
				return err
			}
			acquired <- time.Now()
			return nil
		})
	}()
	select {
	case <-acquired:
		t.Fatal("the second server got the publish lock while the first held it")
	case err := <-bDone:
		t.Fatalf("the second transaction ended while the lock was held: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	released := time.Now()
	close(release)
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-acquired:
		if at.Before(released) {
			t.Fatal("acquired before the release")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the second server never got the lock after the first committed")
	}
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}
	if err := a.Tx(ctx, func(tx *Tx) error { return tx.LockCluster(ctx, "") }); err == nil {
		t.Fatal("an empty lock name was accepted")
	}
}
